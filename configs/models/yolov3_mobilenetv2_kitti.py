# YOLOv3 with a MobileNetV2 backbone for KITTI-style 2D detection, CPU-sized: rtmdet_tiny_kitti.py's data,
# evaluation, hooks and runtime (640x192 input); mmdet's YOLOv3-MobileNetV2 model (anchors scaled by 0.5 with the
# input: KITTI objects at 640x192 are about half their COCO-at-416 size), trained from scratch (upstream starts from
# ImageNet weights, which the product does not download). One size: the model is already a mobile one.
_base_ = './rtmdet_tiny_kitti.py'

max_iters = 300
model = dict(
    _delete_=True,
    type='YOLOV3',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='MobileNetV2', out_indices=(2, 4, 6), act_cfg=dict(type='LeakyReLU', negative_slope=0.1),
                  init_cfg=None),
    neck=dict(type='YOLOV3Neck', num_scales=3, in_channels=[320, 96, 32], out_channels=[96, 96, 96]),
    bbox_head=dict(
        type='YOLOV3Head', num_classes=3, in_channels=[96, 96, 96], out_channels=[96, 96, 96],
        anchor_generator=dict(type='YOLOAnchorGenerator',
                              base_sizes=[[(58, 45), (78, 99), (186, 163)], [(15, 30), (31, 22), (29, 59)],
                                          [(5, 6), (8, 15), (16, 11)]],
                              strides=[32, 16, 8]),
        bbox_coder=dict(type='YOLOBBoxCoder'), featmap_strides=[32, 16, 8],
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0, reduction='sum'),
        loss_conf=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0, reduction='sum'),
        loss_xy=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=2.0, reduction='sum'),
        loss_wh=dict(type='MSELoss', loss_weight=2.0, reduction='sum')),
    train_cfg=dict(assigner=dict(type='GridAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0)),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.01, conf_thr=0.005, nms=dict(type='nms', iou_threshold=0.45),
                  max_per_img=100),
)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.005, momentum=0.9, weight_decay=0.0005),
                     clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', eta_min=5e-5, by_epoch=False, begin=30, end=max_iters, T_max=max_iters - 30),
]
search_space = {  # `admlops tune`: SGD's learning rate and weight decay, the batch size
    '_delete_': True,
    'optim_wrapper.optimizer.lr': dict(type='float', low=0.002, high=0.04, log=True),
    'optim_wrapper.optimizer.weight_decay': dict(type='float', low=0.0001, high=0.001, log=True),
    'train_dataloader.batch_size': dict(type='categorical', choices=[4, 8]),
}
