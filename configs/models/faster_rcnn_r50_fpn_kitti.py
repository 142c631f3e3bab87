# Faster R-CNN R50-FPN (two-stage) for KITTI-style 2D detection, full size: what a team trains on the cluster's GPUs.
# faster_rcnn_r50_fpn_kitti_cpu.py's model with upstream mmdet's proposal counts (1000 RoIs at test, 2000 in
# training) on rtmdet_s_kitti.py's full-resolution data (1242x375 -> 1280x384 padded) and length: batch 8 per GPU,
# SGD 0.02 (mmdet's rate for 8 GPUs x 2 images, scaled by mmengine's auto_scale_lr where enabled), 12000 iterations
# with a 500-iteration warm-up, validated every 2000. Trained from scratch (no ImageNet weights are downloaded:
# start from a zoo model with train --init-from), so BN is trained and no stage is frozen.
_base_ = './faster_rcnn_r50_fpn_kitti_cpu.py'

input_size = (1280, 384)
max_iters = 12000
batch_size = 8
model = dict(
    train_cfg=dict(rpn_proposal=dict(nms_pre=2000, max_per_img=2000)),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000)),
)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=input_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=input_size, allow_negative_crop=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=input_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=input_size, keep_ratio=True),
    dict(type='Pad', size=input_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=batch_size, num_workers=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=max_iters, val_interval=2000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0.0002, by_epoch=False, begin=500, end=max_iters, T_max=max_iters - 500),
]
default_hooks = dict(checkpoint=dict(interval=2000), logger=dict(interval=50))
