# RTMDet-tiny for KITTI-style 2D detection with the product's own modules (admlops.mmext): night-time
# augmentation (LowLight) in training and a neck with channel attention (SECSPNeXtPAFPN). Everything else,
# including the CPU sizing, is rtmdet_tiny_kitti.py's.
_base_ = './rtmdet_tiny_kitti.py'

custom_imports = dict(imports=['admlops.mmext'], allow_failed_imports=False)

input_size = (640, 192)
model = dict(neck=dict(type='SECSPNeXtPAFPN', se_reduction=4))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LowLight', prob=0.3, gain_range=(0.15, 0.5), gamma_range=(1.0, 1.6), noise_std=3.0),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=input_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=input_size, allow_negative_crop=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=input_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
