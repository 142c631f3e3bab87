"""KFP components: KITTI -> COCO for mmdet, with class mapping from a dataset definition; a committed dataset
version of the lake as a Dataset artifact."""
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


@dsl.component(base_image=image_for("convert"), install_kfp_package=False)
def dataset_version(ref: str, store: str, dataset: Output[Dataset]):
    """The committed dataset version ``ref`` (NAME@VERSION) of ``store`` as a Dataset artifact, every file verified
    against its manifest; the metadata carries the version record, as convert's output does."""
    from admlops import catalog, refs
    from admlops.objectstore import open_store

    lake = open_store(store)
    v = catalog.pull(lake, "datasets", *refs.resolve(lake, "datasets", ref), dataset.path)
    record = v.record(lake)
    dataset.metadata.update({"format": "coco", "version": record, "object_uri": record["uri"]})
