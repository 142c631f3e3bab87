# FCOS3D, monocular 3D detection on nuScenes' six cameras (each image with its own `cam_instances`), sized for
# CPUs: mmdet3d's stock fcos3d_r101-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d (10 classes, attributes, velocity,
# direction classifier, GroupNorm head) on quarter-size images with a small backbone, so that a few iterations run in
# seconds on 2 CPU cores.
#
# What is CPU-sized (stock in brackets):
# * images resized to 400 x 225 [1600 x 900], padded to 416 x 256; training resizes with Resize3D, which scales the
#   intrinsics and projected centres with the image (the stock mmdet Resize keeps 1600 x 900, so it needs neither);
#   testing resizes with mmdet's Resize, which keeps the intrinsics, and the head maps its predictions back to the
#   full-size image (rescale), where the infos' cam2img holds;
# * a ResNet-18 [ResNet-101 caffe] trained from scratch: the stock one starts from the ImageNet checkpoint
#   open-mmlab://detectron2/resnet101_caffe, a download (set model.backbone.init_cfg through --cfg-options to use
#   local pretrained weights), so its stem is not frozen and its BatchNorm trains;
# * no deformable convolutions [DCNv2 in the backbone's last two stages and on the head's last conv]: mmcv's CPU
#   build here has no deformable-convolution kernels (they are CUDA-only in mmcv 2.1), so stock FCOS3D cannot run
#   forward on a CPU;
# * FPN and head 64 channels wide [256];
# * at most 50 candidates per FPN level into the 3D NMS [1000] and 30 boxes kept per image [200]: mmcv's CPU rotated
#   NMS intersects every pair of boxes exactly (measured: 1.1 s per class for the ~1,700 candidates of an untrained
#   model at this image size), and NuScenesMetric runs it again over each sample's six images;
# * an iteration schedule (the product's --max-iters / --batch-size count iterations): the stock shape (linear warm-up
#   from 1/3 of the learning rate, x0.1 at 8/12 and x0.01 at 11/12 of the schedule) over 200 iterations at batch 4.
# Measured on the 2-core development machine, one thread, under a load average of 7 from other jobs: 2.6 s per
# training iteration (forward + backward) at batch 4, 0.5 s inference per image for an untrained model.
#
# The train step fills in data_root, the infos files and the devkit version from the mmdet3d nuScenes data root it is
# given (`admlops data infos --from nuscenes`) and may override max_iters / batch size.
_base_ = 'mmdet3d::fcos3d/fcos3d_r101-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d.py'

image_size = (400, 225)
channels = 64
lr = 0.002
max_iters = 200
batch_size = 4

model = dict(
    backbone=dict(depth=18, style='pytorch', frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, dcn=None, stage_with_dcn=(False, False, False, False), init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=channels),
    bbox_head=dict(in_channels=channels, feat_channels=channels, dcn_on_last_conv=False, cls_branch=(channels, ),
                   reg_branch=((channels, ), (channels, ), (channels, ), (channels, ), ()), dir_branch=(channels, ),
                   attr_branch=(channels, )),
    test_cfg=dict(nms_pre=50, max_per_img=30),
)

train_pipeline = [
    dict(type='Resize3D', scale=image_size, keep_ratio=True) if t['type'] == 'mmdet.Resize' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(type='mmdet.Resize', scale=image_size, keep_ratio=True) if t['type'] == 'mmdet.Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(batch_size=batch_size, num_workers=1, persistent_workers=False,
                        sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=1, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=lr))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
_warmup, _step1, _step2 = max_iters // 4, max_iters * 8 // 12, max_iters * 11 // 12
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=_warmup),
    dict(type='ConstantLR', factor=0.1, by_epoch=False, begin=_step1, end=_step2),
    dict(type='ConstantLR', factor=0.01, by_epoch=False, begin=_step2, end=max_iters),
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False, max_keep_ckpts=1),
    logger=dict(type='LoggerHook', interval=10),
)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
