"""Renamed ``to_coco`` (it converts every reader's format, not KITTI alone). This alias is only for bench/
(deploy_bench.py, iterate_bench.py), which still import the old name: delete it once they import ``to_coco``."""
from admlops.components.convert.to_coco import convert_to_coco, hash_split, kitti_to_coco  # noqa: F401
