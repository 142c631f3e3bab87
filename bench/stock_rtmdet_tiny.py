# mmdet's stock RTMDet-tiny recipe for bench/models_bench.py, changed only where this machine requires it:
# no ImageNet weights (nothing is downloaded) and 2 dataloader workers (it asks for 10; the machine has 2 cores).
# The dataset, its classes and num_classes are set by admlops.mmconfig.use_dataset, as for every config.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

model = dict(backbone=dict(init_cfg=None))
train_dataloader = dict(num_workers=2)
val_dataloader = dict(num_workers=2)
test_dataloader = val_dataloader
