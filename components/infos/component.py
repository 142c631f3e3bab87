"""KFP components: a KITTI- or nuScenes-format source -> the mmdet3d data root (infos, GT database) as a Dataset,
in shards (convert's ``shard_plan`` gives the indices, a ParallelFor's items): one pod per shard, and the merge of
their outputs (``dsl.Collected``) into the data root, byte for byte what one process writes."""
from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("infos"), install_kfp_package=False)
def infos_shard(source: str, data_format: str, nuscenes_version: str, store: str, shard: int, shards: int,
                part: Output[Artifact]):
    """Shard ``shard`` of ``shards`` of the data root of ``source`` (a path or a dataset version NAME@VERSION in
    ``store``): its frames' reduced scans, GT-database files and spooled infos."""
    from admlops.components.infos.infos import write_infos_shard

    record = write_infos_shard(source, part.path, shard, shards, data_format, store, nuscenes_version)
    part.metadata.update({"shard": shard, "shards": shards, "frames": record["counts"]})


@dsl.component(base_image=image_for("infos"), install_kfp_package=False)
def infos(source: str, data_format: str, nuscenes_version: str, store: str, parts: Input[List[Artifact]],
          dataset: Output[Dataset]):
    """The data root from the shards, and the source published as a dataset version, whose record the metadata
    carries (``version``: the lineage of the models trained on it)."""
    from admlops.components.infos.infos import merge_infos_shards

    summary = merge_infos_shards(source, [p.path for p in parts], dataset.path, data_format, store, nuscenes_version)
    dataset.metadata.update({"format": f"mmdet3d-{data_format}", "frames": summary["frames"],
                             "source": summary["source_version"], "version": summary["source_version"]})
