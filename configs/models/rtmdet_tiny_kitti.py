# RTMDet-tiny for KITTI-style 2D detection, sized to train from scratch on 2 CPU cores in minutes.
# The train step fills in data_root, ann_file, classes and num_classes from the converted dataset
# and may override max_iters / batch size; everything else is here.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

input_size = (640, 192)  # (w, h): KITTI's 1242x375 frames scaled by ~0.51, padded to a multiple of 32
max_iters = 300
val_interval = 300
batch_size = 8
classes = ('Car', 'Pedestrian', 'Cyclist')
norm_cfg = dict(type='BN')  # SyncBN (upstream) needs a process group; BN exports and runs anywhere

model = dict(
    use_syncbn=False,  # RTMDet converts BN to SyncBN under DDP; SyncBN runs on GPUs only (and BN exports anywhere)
    backbone=dict(init_cfg=None, norm_cfg=norm_cfg),  # no ImageNet weights: nothing is downloaded
    neck=dict(norm_cfg=norm_cfg),
    bbox_head=dict(num_classes=len(classes), norm_cfg=norm_cfg),
    test_cfg=dict(nms_pre=1000, score_thr=0.01, nms=dict(type='nms', iou_threshold=0.6), max_per_img=100),
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

_dataset = dict(
    type='CocoDataset',
    data_root='',
    metainfo=dict(classes=classes),
    data_prefix=dict(img=''),
    backend_args=None,
)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=1,
    persistent_workers=True,
    pin_memory=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(_dataset, ann_file='annotations/train.json', filter_cfg=dict(filter_empty_gt=False, min_size=4),
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(_dataset, ann_file='annotations/val.json', test_mode=True, pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file='annotations/val.json', metric='bbox', classwise=True,
                     format_only=False, backend_args=None)
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
# lr 0.008 (AdamW, batch 8): chosen by bench/models_bench.py's variants on data the tests never use (3 minutes of
# training: 0.579 mAP@0.5 against 0.508 at upstream's 0.004; batch 4 0.572, batch 16 0.302, no scale jitter 0.526,
# RTMDet's EMA 0.491 — the table in the README). The full-size rtmdet_s_kitti.py keeps upstream's 0.004.
optim_wrapper = dict(optimizer=dict(lr=0.008))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', eta_min=2e-4, by_epoch=False, begin=30, end=max_iters, T_max=max_iters - 30),
]
# train --init-from (and an iterate round's retraining) fine-tunes a trained model at a quarter of the rate: at the full
# rate RTMDet-tiny forgot what it knew (bench/iterate_bench.py: a seed's Car AP@0.5 fell from 0.99 to 0.64 in 40
# iterations), and bench/models_bench.py's finetune section measures the fraction of iterations it needs
finetune_lr_factor = 0.25
# `admlops prune` (components/prune): channels scored by first-order Taylor importance (the training loss's gradient
# times the weights: their L2 norm alone picked channels BatchNorm amplifies); the class and box convolutions of
# every level keep their outputs (the classes and the box sides)
pruning = dict(importance='taylor', batches=4, keep=['bbox_head.rtm_cls', 'bbox_head.rtm_reg'], round_to=8)
custom_hooks = []  # upstream's EMA and epoch-based pipeline switch do not fit a few hundred iterations
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False, max_keep_ckpts=1),
    logger=dict(type='LoggerHook', interval=10),
)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False)
# `admlops tune` searches these (components/tune): the learning rate and weight decay of AdamW, the batch size
search_space = {
    'optim_wrapper.optimizer.lr': dict(type='float', low=0.001, high=0.02, log=True),
    'optim_wrapper.optimizer.weight_decay': dict(type='float', low=0.005, high=0.1, log=True),
    'train_dataloader.batch_size': dict(type='categorical', choices=[4, 8]),
}
