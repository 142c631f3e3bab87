# CenterPoint (pillars) for nuScenes LiDAR detection, sized for CPUs: mmdet3d's stock
# centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d (10 classes in 6 task heads, 9 sweeps accumulated per
# keyframe, GT-database sampling, velocity regression) on a coarser pillar grid with thinner layers, so that a few
# iterations run in seconds on 2 CPU cores.
#
# What is CPU-sized (stock in brackets):
# * the stock range [-51.2, 51.2] m around the car at 0.8 m pillars [0.2 m]: a 128 x 128 grid [512 x 512], 16x fewer
#   cells, and at most 10 points per pillar [20];
# * a SECOND backbone of 1/2/2 blocks [3/5/5] with 32/64/128 channels [64/128/256], pillar features 32 [64], an FPN
#   of 3 x 64 channels [3 x 128], task heads sharing 32 channels [64]; the head's heat map keeps the stock stride 4
#   (32 x 32 cells of 3.2 m);
# * at most 300 candidates per task head into the rotated NMS [1000]: mmcv's CPU rotated NMS intersects every pair of
#   boxes exactly, ~1.4 s per frame for an untrained model's 6 x 1000 candidates (measured);
# * an iteration schedule (the product's --max-iters / --batch-size count iterations): the stock cyclic shape (lr up
#   x10 over the first 40 %, then down to 1e-4 x; momentum the other way) over 200 iterations at batch 2;
# * no CBGSDataset wrapper: class-balanced grouping divides by each class's share of the train frames, so it fails
#   (ZeroDivisionError) on a split without some class, as nuScenes-mini and the synthetic data are; the GT-database
#   sampler (the stock sample_groups) still pastes objects of every class, of those the GT database has (the train
#   step drops the others from it: mmdet3d's sampler fails on a class it has no objects of).
# Measured on the 2-core development machine, one thread, under a load average of 7 from other jobs: 1.4 s per
# training iteration (forward + backward) at batch 2 on synthetic nuScenes (~32k points per keyframe with its sweeps),
# 0.55 s inference per frame for an untrained model (all 6 x 83 boxes kept); `admlops train --max-iters 2` and
# `admlops evaluate` on 3 + 3 synthetic frames took 80-100 s wall together there, mostly imports and numba compiles.
#
# The train step fills in data_root, the infos files, the devkit version and the GT-database paths from the mmdet3d
# nuScenes data root it is given (`admlops data infos --from nuscenes`) and may override max_iters / batch size.
_base_ = 'mmdet3d::centerpoint/centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py'

point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
voxel_size = [0.8, 0.8, 8]
grid = 128  # cells per side (the range over the voxel size): a multiple of 8 for the backbone's 3 strides
lr = 1e-4
max_iters = 200
batch_size = 2

model = dict(
    data_preprocessor=dict(voxel_layer=dict(voxel_size=voxel_size, max_num_points=10, max_voxels=(16000, 16000))),
    pts_voxel_encoder=dict(feat_channels=[32], voxel_size=voxel_size),
    pts_middle_encoder=dict(in_channels=32, output_shape=(grid, grid)),
    pts_backbone=dict(in_channels=32, out_channels=[32, 64, 128], layer_nums=[1, 2, 2]),
    pts_neck=dict(in_channels=[32, 64, 128], out_channels=[64, 64, 64]),
    pts_bbox_head=dict(in_channels=3 * 64, share_conv_channel=32, bbox_coder=dict(voxel_size=voxel_size[:2])),
    train_cfg=dict(pts=dict(grid_size=[grid, grid, 1], voxel_size=voxel_size)),
    test_cfg=dict(pts=dict(voxel_size=voxel_size[:2], pre_max_size=300)),
)

train_dataloader = dict(
    _delete_=True,
    batch_size=batch_size,
    num_workers=1,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=_base_.train_dataloader.dataset.dataset,
)
val_dataloader = dict(num_workers=1, persistent_workers=False)
test_dataloader = val_dataloader

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
_up = int(max_iters * 0.4)
param_scheduler = [
    dict(type=f'CosineAnnealing{kind}', T_max=end - begin, eta_min=eta, begin=begin, end=end, by_epoch=False)
    for kind, etas in (('LR', (lr * 10, lr * 1e-4)), ('Momentum', (0.85 / 0.95, 1)))  # (up, down) phase ends
    for (begin, end), eta in zip(((0, _up), (_up, max_iters)), etas)
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False, max_keep_ckpts=1),
    logger=dict(type='LoggerHook', interval=10),
)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
