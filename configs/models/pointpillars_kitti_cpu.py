# PointPillars for KITTI 3D detection, sized for CPUs: pointpillars_kitti (mmdet3d's stock model, schedule shape
# and GT-database sampling) on a smaller point-cloud range and a coarser pillar grid, so a demo trains in minutes
# on 2 CPU cores.
#
# Range [0, -32, -3, 51.2, 32, 1] (51.2 m ahead, 32 m to each side; the stock one is 69.12 m x 39.68 m) at 0.32 m
# pillars (stock 0.16 m): a 160 x 200 grid, 6.7x fewer cells than the stock 432 x 496, and at most 16 points per
# pillar (stock 32: the pillar feature net's BatchNorm over pillars x points is half of a CPU iteration; 16 cut
# the iteration from 4.1 to 2.7 CPU seconds). Synthetic KITTI places its objects 5-42 m ahead, all inside.
# Measured on the 2-core development machine, one thread, CPU seconds per training iteration: 2.7 at batch 4 here,
# 18.3 for the stock config at batch 2, which trains at ~8 s per iteration there (2 threads, idle machine): by that
# ratio an estimated ~1.2 s per iteration, ~4 minutes for the 200 iterations. (The same machine under a load
# average of 11 from other jobs: 35-42 s wall per iteration.)
#
# The train step fills in data_root, the infos files and the GT-database paths from the mmdet3d data root it is
# given (`admlops data infos`) and may override max_iters / batch size.
_base_ = './pointpillars_kitti.py'

point_cloud_range = [0, -32.0, -3, 51.2, 32.0, 1]
voxel_size = [0.32, 0.32, 4]
grid = [200, 160]  # (y, x) cells: the range over the voxel size; a multiple of 8 for the backbone's 3 strides
max_iters = 200
batch_size = 4

# BatchNorm running statistics follow the weights 10x faster than stock (momentum 0.1, stock 0.01): over 200
# iterations the stock ones still hold mostly early-training statistics, and the model that detects Cars at BEV
# AP 78 with fresh statistics detects nothing in eval mode (measured).
norm = dict(eps=1e-3, momentum=0.1)
model = dict(
    data_preprocessor=dict(voxel_layer=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size,
                                            max_num_points=16)),
    voxel_encoder=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size, norm_cfg=dict(type='BN1d', **norm)),
    middle_encoder=dict(output_shape=grid),
    backbone=dict(norm_cfg=dict(type='BN', **norm)),
    neck=dict(norm_cfg=dict(type='BN', **norm)),
    bbox_head=dict(anchor_generator=dict(ranges=[
        [0, -32.0, -0.6, 51.2, 32.0, -0.6],  # Pedestrian
        [0, -32.0, -0.6, 51.2, 32.0, -0.6],  # Cyclist
        [0, -32.0, -1.78, 51.2, 32.0, -1.78],  # Car
    ])),
)

train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4, backend_args=None),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectSample', db_sampler=_base_.db_sampler, use_ground_plane=False),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.78539816, 0.78539816], scale_ratio_range=[0.95, 1.05]),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PointShuffle'),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_labels_3d', 'gt_bboxes_3d']),
]
test_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4, backend_args=None),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='Pack3DDetInputs', keys=['points']),
]
train_dataloader = dict(batch_size=batch_size, num_workers=1, dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
_up = int(max_iters * 0.4)
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=_up, eta_min=_base_.lr * 10, begin=0, end=_up, by_epoch=False),
    dict(type='CosineAnnealingLR', T_max=max_iters - _up, eta_min=_base_.lr * 1e-4, begin=_up, end=max_iters,
         by_epoch=False),
    dict(type='CosineAnnealingMomentum', T_max=_up, eta_min=0.85 / 0.95, begin=0, end=_up, by_epoch=False),
    dict(type='CosineAnnealingMomentum', T_max=max_iters - _up, eta_min=1, begin=_up, end=max_iters,
         by_epoch=False),
]
default_hooks = dict(checkpoint=dict(interval=100), logger=dict(interval=10))
