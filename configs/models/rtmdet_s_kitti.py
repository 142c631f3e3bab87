# RTMDet-s for KITTI-style 2D detection, full size: what a team trains on the cluster's GPUs. KITTI frames at their
# own resolution (1242x375 -> 1280x384 padded), batch 16 per GPU, 12000 iterations (about 60 epochs of KITTI's 7481
# training frames at 8 GPUs x 16, the schedule RTMDet's COCO recipe scales to), EMA of the weights as upstream.
# Trained from scratch (no ImageNet weights are downloaded: start from a zoo model with train --init-from).
# The other full-size 2D configs take their data pipeline and schedule from here; rtmdet_tiny_kitti.py is the
# CPU-sized model.
_base_ = './rtmdet_tiny_kitti.py'

input_size = (1280, 384)
max_iters = 12000
batch_size = 16
model = dict(
    backbone=dict(deepen_factor=0.33, widen_factor=0.5),
    neck=dict(in_channels=[128, 256, 512], out_channels=128, num_csp_blocks=1),
    bbox_head=dict(in_channels=128, feat_channels=128, exp_on_reg=False),
)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=input_size, ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=input_size, allow_negative_crop=True),
    dict(type='YOLOXHSVRandomAug'),
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
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=2e-4, by_epoch=False, begin=500, end=max_iters, T_max=max_iters - 500),
]
optim_wrapper = dict(optimizer=dict(lr=0.004))  # upstream's rate for a long GPU schedule (the tiny one's is for CPU minutes)
custom_hooks = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49)]
default_hooks = dict(checkpoint=dict(interval=2000), logger=dict(interval=50))
