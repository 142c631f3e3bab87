"""Moved to components/infos/kitti.py (infos is its own step). This alias is only for bench/ (infos_bench.py,
det3d_bench.py), which still import the old path: delete it once they import ``admlops.components.infos.kitti``."""
from admlops.components.infos.kitti import write_kitti_infos  # noqa: F401
