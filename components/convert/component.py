"""KFP component: KITTI -> COCO for mmdet, with class mapping from a dataset definition."""
from kfp import dsl
from kfp.dsl import Dataset, Output

from admlops.images import IMAGES


@dsl.component(base_image=IMAGES["cpu"], install_kfp_package=False)
def convert(kitti_root: str, definition: str, val_fraction: float, seed: int, dataset: Output[Dataset]):
    """Convert the KITTI dataset at ``kitti_root`` into a COCO dataset artifact."""
    from admlops.components.convert.kitti_coco import kitti_to_coco

    summary = kitti_to_coco(kitti_root, dataset.path, definition, val_fraction, seed)
    dataset.metadata.update({"format": "coco", "frames": summary["frames"], "categories": summary["categories"]})
