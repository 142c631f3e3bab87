"""KFP component: KITTI -> COCO for mmdet, with class mapping from a dataset definition."""
from kfp import dsl
from kfp.dsl import Dataset, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("convert"), install_kfp_package=False)
def convert(kitti: str, definition: str, val_fraction: float, seed: int, store: str, dataset: Output[Dataset]):
    """Convert KITTI (a path or a dataset version NAME@VERSION in ``store``) into a COCO dataset artifact;
    the source and the result are published as dataset versions and their URIs kept in the metadata."""
    from admlops.components.convert.lake import convert_with_store

    summary = convert_with_store(kitti, dataset.path, definition, val_fraction, seed, store)
    dataset.metadata.update({
        "format": "coco", "frames": summary["frames"], "categories": summary["categories"],
        "source": summary["source_version"], "version": summary["dataset_version"],
        "object_uri": summary["dataset_version"]["uri"],
    })
