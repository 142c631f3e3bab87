"""KFP components: KITTI -> COCO for mmdet, with class mapping from a dataset definition, in shards (the plan: the
shard indices, a ParallelFor's items; one pod per shard; the merge, ``convert``); a committed dataset version of
the lake as a Dataset artifact."""
from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("convert"), install_kfp_package=False)
def shard_plan(data_format: str, shards: int) -> List[int]:
    """The shard indices of a conversion (a ParallelFor's items): ``shards`` ranges of the source's frames."""
    from admlops.components.infos.infos import shards_of

    return shards_of(data_format, shards)


@dsl.component(base_image=image_for("convert"), install_kfp_package=False)
def convert_shard(kitti: str, definition: str, val_fraction: float, seed: int, store: str, shard: int, shards: int,
                  part: Output[Artifact]):
    """Shard ``shard`` of ``shards`` of the conversion of ``kitti`` (a path or NAME@VERSION in ``store``): a
    contiguous range of its frames read."""
    from admlops.components.convert.lake import convert_shard_with_store

    record = convert_shard_with_store(kitti, part.path, shard, shards, definition, val_fraction, seed, store)
    part.metadata.update(record)


@dsl.component(base_image=image_for("convert"), install_kfp_package=False)
def convert(kitti: str, definition: str, val_fraction: float, seed: int, store: str, parts: Input[List[Artifact]],
            dataset: Output[Dataset]):
    """KITTI (a path or a dataset version NAME@VERSION in ``store``) as a COCO dataset artifact, merged from the
    shards ``convert_shard`` read (byte for byte what one process writes); the source and the result published as
    dataset versions, their URIs kept in the metadata."""
    from admlops.components.convert.lake import convert_with_store, dataset_metadata

    summary = convert_with_store(kitti, dataset.path, definition, val_fraction, seed, store, [p.path for p in parts])
    dataset.metadata.update(dataset_metadata(summary))


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
