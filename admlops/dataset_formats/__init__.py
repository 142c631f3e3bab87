"""The public datasets' own on-disk formats (KITTI's label and calibration files, nuScenes' v1.0 tables): parsing
and writing, with errors that name file and line. Not the labeling tools' formats (components/iterate/formats)."""
