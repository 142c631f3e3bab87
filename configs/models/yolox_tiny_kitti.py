# YOLOX-tiny for KITTI-style 2D detection, CPU-sized like rtmdet_tiny_kitti.py, whose data, evaluation, hooks and
# runtime it takes (the train step fills in data root, classes and num_classes); the model is mmdet's YOLOX-tiny
# (CSPDarknet 0.33/0.375, PAFPN, decoupled head, SimOTA), trained from scratch (no weights are downloaded).
# Upstream's Mosaic/MixUp and multi-scale batches are for 300 COCO epochs; a few hundred iterations on a CPU train
# on the plain pipeline of the base. Full size on GPUs: yolox_s_kitti.py.
_base_ = './rtmdet_tiny_kitti.py'

norm_cfg = dict(type='BN', momentum=0.03, eps=0.001)
max_iters = 300
model = dict(
    _delete_=True,
    type='YOLOX',
    data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32),
    backbone=dict(type='CSPDarknet', deepen_factor=0.33, widen_factor=0.375, out_indices=(2, 3, 4),
                  use_depthwise=False, spp_kernal_sizes=(5, 9, 13), norm_cfg=norm_cfg, act_cfg=dict(type='Swish')),
    neck=dict(type='YOLOXPAFPN', in_channels=[96, 192, 384], out_channels=96, num_csp_blocks=1, use_depthwise=False,
              upsample_cfg=dict(scale_factor=2, mode='nearest'), norm_cfg=norm_cfg, act_cfg=dict(type='Swish')),
    bbox_head=dict(
        type='YOLOXHead', num_classes=3, in_channels=96, feat_channels=96, stacked_convs=2, strides=(8, 16, 32),
        use_depthwise=False, norm_cfg=norm_cfg, act_cfg=dict(type='Swish'),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum', loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', mode='square', eps=1e-16, reduction='sum', loss_weight=5.0),
        loss_obj=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum', loss_weight=1.0),
        loss_l1=dict(type='L1Loss', reduction='sum', loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='SimOTAAssigner', center_radius=2.5)),
    test_cfg=dict(nms_pre=1000, score_thr=0.01, nms=dict(type='nms', iou_threshold=0.65), max_per_img=100),
)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    dict(type='QuadraticWarmupLR', by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', eta_min=0.0005, by_epoch=False, begin=30, end=max_iters, T_max=max_iters - 30),
]
# `admlops prune` (components/prune): the class, box and objectness convolutions of every level keep their outputs
pruning = dict(importance='taylor', batches=4, keep=['bbox_head.multi_level_conv_cls', 'bbox_head.multi_level_conv_reg',
                                      'bbox_head.multi_level_conv_obj'], round_to=8)
search_space = {  # `admlops tune`: SGD's learning rate and weight decay, the batch size
    '_delete_': True,
    'optim_wrapper.optimizer.lr': dict(type='float', low=0.002, high=0.04, log=True),
    'optim_wrapper.optimizer.weight_decay': dict(type='float', low=0.0001, high=0.001, log=True),
    'train_dataloader.batch_size': dict(type='categorical', choices=[4, 8]),
}
