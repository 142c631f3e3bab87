# PointPillars for KITTI 3D detection (Pedestrian, Cyclist, Car), full size, for a GPU: mmdet3d's stock
# point-cloud range [0, -39.68, -3, 69.12, 39.68, 1] and 0.16 m pillars (a 432 x 496 grid). On the 2-core CPU
# development machine one iteration at batch 2 takes ~8 s; pointpillars_kitti_cpu is the same model on a
# smaller range and a coarser grid for CPUs.
#
# The train step fills in data_root, the infos files and the GT-database paths from the mmdet3d data root it is
# given (`admlops data infos`) and may override max_iters / batch size. What differs from the stock config:
# * an iteration-based schedule (the product's --max-iters, --batch-size and checkpoint intervals count
#   iterations): the stock one-cycle shape (lr up x10 over the first 40 %, then down to 1e-4 x, momentum the
#   other way) over 12,400 iterations at batch 6 = the stock 160 epochs (80 x RepeatDataset 2) of KITTI's 3,712
#   train frames on 8 GPUs (`--nproc 8`); on one GPU use --max-iters 99000 for the same number of epochs;
# * ObjectSample without the ground plane: the stock config needs a plane per frame (KITTI's training/planes, a
#   separate download). The train step turns use_ground_plane on when every train frame's info carries one.
_base_ = 'mmdet3d::pointpillars/pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class.py'

lr = 0.001
max_iters = 12400
batch_size = 6

train_pipeline = [dict(t, use_ground_plane=False) if t['type'] == 'ObjectSample' else t
                  for t in _base_.train_pipeline]
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(dataset=dict(pipeline=train_pipeline)),
)

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
_up = int(max_iters * 0.4)
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=_up, eta_min=lr * 10, begin=0, end=_up, by_epoch=False),
    dict(type='CosineAnnealingLR', T_max=max_iters - _up, eta_min=lr * 1e-4, begin=_up, end=max_iters,
         by_epoch=False),
    dict(type='CosineAnnealingMomentum', T_max=_up, eta_min=0.85 / 0.95, begin=0, end=_up, by_epoch=False),
    dict(type='CosineAnnealingMomentum', T_max=max_iters - _up, eta_min=1, begin=_up, end=max_iters,
         by_epoch=False),
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1000, by_epoch=False, max_keep_ckpts=1),
    logger=dict(type='LoggerHook', interval=50),
)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# Structural pruning (admlops prune, components/prune/prune.py) of the 2D part (backbone, neck, head) on the
# bird's-eye-view pseudo-image; the pillar encoder and the scatter stay whole. Taylor importance, as for the 2D
# families; the head's class, box and direction convolutions keep their outputs (anchors x classes, box sides, bins)
pruning = dict(importance='taylor', batches=4, round_to=8,
               keep=['bbox_head.conv_cls', 'bbox_head.conv_reg', 'bbox_head.conv_dir_cls'])
