# YOLOX-s for KITTI-style 2D detection, full size (cluster GPUs): yolox_tiny_kitti.py's model at YOLOX-s widths,
# on rtmdet_s_kitti.py's full-resolution data pipeline and schedule (1280x384, batch 16, 12000 iterations, EMA).
_base_ = './yolox_tiny_kitti.py'

input_size = (1280, 384)
max_iters = 12000
model = dict(
    backbone=dict(deepen_factor=0.33, widen_factor=0.5),
    neck=dict(in_channels=[128, 256, 512], out_channels=128),
    bbox_head=dict(in_channels=128, feat_channels=128),
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
train_dataloader = dict(batch_size=16, num_workers=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=max_iters, val_interval=2000)
param_scheduler = [
    dict(type='QuadraticWarmupLR', by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0.0005, by_epoch=False, begin=500, end=max_iters, T_max=max_iters - 500),
]
custom_hooks = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True, priority=49)]
default_hooks = dict(checkpoint=dict(interval=2000), logger=dict(interval=50))
