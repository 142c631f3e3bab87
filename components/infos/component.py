"""KFP component: a KITTI- or nuScenes-format source -> the mmdet3d data root (infos, GT database) as a Dataset."""
from kfp import dsl
from kfp.dsl import Dataset, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("infos"), install_kfp_package=False)
def infos(source: str, data_format: str, nuscenes_version: str, store: str, dataset: Output[Dataset]):
    """Write the data root of ``source`` (a path or a dataset version NAME@VERSION in ``store``; ``data_format``
    kitti or nuscenes, ``nuscenes_version`` e.g. v1.0-mini) and publish the source as a dataset version, whose
    record the metadata carries (``version``: the lineage of the models trained on it)."""
    from admlops.components.infos.infos import write_infos

    summary = write_infos(source, dataset.path, data_format, store, nuscenes_version)
    dataset.metadata.update({"format": f"mmdet3d-{data_format}", "frames": summary["frames"],
                             "source": summary["source_version"], "version": summary["source_version"]})
