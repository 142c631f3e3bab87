"""Conversion in shards (pipelines' ParallelFor of convert-shard / infos-shard, merged by one step): any split into
shards, merged in any order, gives byte for byte what one process writes; a missing shard is refused; the compiled
pipelines retry a shard alone and bound how many run at once."""
import filecmp
from pathlib import Path

import pytest
import yaml

from admlops.components.convert.lake import convert_shard_with_store, convert_with_store
from admlops.components.infos.infos import merge_infos_shards, write_infos, write_infos_shard
from admlops.errors import InputError, UsageError
from admlops.pipelines.profiles import SHARD_RETRIES, load_profile


def tree(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_bytes(a: Path, b: Path) -> None:
    ta, tb = tree(a), tree(b)
    assert list(ta) == list(tb)
    differ = [rel for rel in ta if not filecmp.cmp(ta[rel], tb[rel], shallow=False)]
    assert not differ, differ


def record_pulls(monkeypatch) -> list[set[str]]:
    """Every later ``catalog.pull``'s files, relative to its destination, added to the last set of the list returned
    (append a set to start a new step's record)."""
    from admlops import catalog

    pulled: list[set[str]] = []
    real_pull = catalog.pull

    def recording_pull(*args, **kwargs):
        meta = real_pull(*args, **kwargs)
        pulled[-1] |= {p.relative_to(args[4]).as_posix() for p in Path(args[4]).rglob("*") if p.is_file()}
        return meta

    monkeypatch.setattr(catalog, "pull", recording_pull)
    return pulled


@pytest.mark.parametrize("shards", [2, 3])
def test_infos_shards_merge_to_what_one_process_writes(kitti_root, shards, tmp_path):
    store = str(tmp_path / "store")
    one = write_infos(str(kitti_root), tmp_path / "one", "kitti", store, workers=1)
    parts = [tmp_path / f"part{k}" for k in range(shards)]
    for k, part in enumerate(parts):
        write_infos_shard(str(kitti_root), part, k, shards, "kitti", store)
    merged = merge_infos_shards(str(kitti_root), parts[::-1], tmp_path / "merged", "kitti", store)
    assert merged == one and sum(merged["frames"][s] for s in ("train", "val")) == 20
    assert_same_bytes(tmp_path / "one", tmp_path / "merged")  # infos, dbinfos (group ids), scans, GT database
    assert any(p.name.endswith("_dbinfos_train.pkl") for p in (tmp_path / "merged").iterdir())
    # the control: two shards in the wrong order give other bytes (the merge's ordering is what is under test)
    if shards == 2:
        from admlops.components.infos.kitti import _assemble

        swapped = tmp_path / "swapped"
        swapped.mkdir()
        import shutil

        copies = []
        for k, part in enumerate(parts[::-1]):
            shutil.copytree(part, swapped / f"s{k}", symlinks=True)
            copies.append(swapped / f"s{k}")
        _assemble(kitti_root.resolve(), swapped, copies, "kitti")
        assert not filecmp.cmp(swapped / "kitti_infos_train.pkl", tmp_path / "one" / "kitti_infos_train.pkl",
                               shallow=False)


def test_shards_of_a_dataset_version_pull_only_their_frames_scans_and_images(kitti_root, tmp_path, monkeypatch):
    """A shard's pod downloads the labels, calibration and split lists whole (the shards are planned from them) but
    the scans and images of its own frames only; merged, the shards are what one process writes from the folder."""
    from admlops import catalog
    from admlops.components.convert.lake import KITTI_ROLES
    from admlops.components.infos.kitti import kitti_splits, shard_of

    from admlops.objectstore import open_store

    store = str(tmp_path / "store")
    one = write_infos(str(kitti_root), tmp_path / "one", "kitti", store, workers=1)
    version = catalog.push(open_store(store), "datasets", kitti_root.resolve().name, kitti_root, roles=KITTI_ROLES)
    assert version.record(open_store(store)) == one["source_version"]  # the version the folder was published as
    ref = f"{version.name}@{version.version}"
    pulled = record_pulls(monkeypatch)
    splits = kitti_splits(kitti_root.resolve())
    parts, seen = [tmp_path / f"part{k}" for k in range(2)], set()
    for k, part in enumerate(parts):
        pulled.append(set())
        write_infos_shard(ref, part, k, 2, "kitti", store)
        frames = {f for ids in shard_of(splits, k, 2).values() for f in ids}
        scans = {Path(p).stem for p in pulled[-1] if p.startswith("training/velodyne/")}
        images = {Path(p).stem for p in pulled[-1] if p.startswith("training/image_2/")}
        labels = {Path(p).stem for p in pulled[-1] if p.startswith("training/label_2/")}
        assert scans == images == frames and len(frames) == 10  # its own frames' scans and images
        assert len(labels) == 20  # every label: the plan reads them
        seen |= scans
    assert len(seen) == 20  # the two shards together: every frame once
    pulled.append(set())
    merged = merge_infos_shards(ref, parts, tmp_path / "merged", "kitti", store)
    assert merged == one
    assert_same_bytes(tmp_path / "one", tmp_path / "merged")
    # the 2D convert's shards too: their frames' images only
    pulled.append(set())
    convert_shard_with_store(ref, tmp_path / "c0", 0, 2, "kitti-3class", 0.2, 0, store)
    assert 0 < len({p for p in pulled[-1] if p.startswith("training/image_2/")}) < 20


def test_nuscenes_shards_of_a_dataset_version_pull_their_samples_files_and_the_sweeps_before_them(nuscenes_root,
                                                                                                  tmp_path, monkeypatch):
    """A nuScenes shard's pod pulls the tables and maps whole and, of samples/ and sweeps/, the files its samples
    read (keyframes, and the LiDAR sweeps before each); merged, the shards are what one process writes."""
    from admlops import catalog
    from admlops.components.infos.infos import NUSCENES_ROLES
    from admlops.components.infos.nuscenes import shard_files
    from admlops.objectstore import open_store

    store = str(tmp_path / "store")
    one = write_infos(str(nuscenes_root), tmp_path / "one", "nuscenes", store, "v1.0-mini", max_sweeps=10, workers=1)
    version = catalog.push(open_store(store), "datasets", nuscenes_root.resolve().name, nuscenes_root,
                           roles=NUSCENES_ROLES)
    ref = f"{version.name}@{version.version}"
    sensor = {r["path"] for r in catalog.read_manifest(open_store(store), "datasets", version.name, version.version)
              if r["path"].startswith(("samples/", "sweeps/"))}
    pulled = record_pulls(monkeypatch)
    parts, seen = [tmp_path / f"part{k}" for k in range(3)], set()
    for k, part in enumerate(parts):
        pulled.append(set())
        write_infos_shard(ref, part, k, 3, "nuscenes", store, "v1.0-mini")
        got = {p for p in pulled[-1] if p.startswith(("samples/", "sweeps/"))}
        assert got == shard_files(nuscenes_root, k, 3, "v1.0-mini") and 0 < len(got) < len(sensor)  # its share
        assert {p for p in sensor if p.startswith("samples/LIDAR_TOP/")} & got  # keyframe scans among them
        assert any(p.startswith("v1.0-mini/") for p in pulled[-1])  # the tables whole
        seen |= got
    assert {p for p in sensor if p.startswith("samples/")} <= seen  # every keyframe by some shard
    merged = merge_infos_shards(ref, parts, tmp_path / "merged", "nuscenes", store, "v1.0-mini")
    assert merged == one
    assert_same_bytes(tmp_path / "one", tmp_path / "merged")


def test_nuscenes_shards_merge_to_what_one_process_writes(nuscenes_root, tmp_path):
    """Sample ranges (a range may end inside a scene: each sample's info reads the tables, not another sample's)."""
    store = str(tmp_path / "store")
    one = write_infos(str(nuscenes_root), tmp_path / "one", "nuscenes", store, "v1.0-mini", max_sweeps=10, workers=1)
    parts = [tmp_path / f"part{k}" for k in range(3)]
    for k, part in enumerate(parts):
        write_infos_shard(str(nuscenes_root), part, k, 3, "nuscenes", store, "v1.0-mini")
    merged = merge_infos_shards(str(nuscenes_root), parts[::-1], tmp_path / "merged", "nuscenes", store, "v1.0-mini")
    assert merged == one and sum(merged["frames"].values()) == 8
    assert_same_bytes(tmp_path / "one", tmp_path / "merged")


def test_infos_merge_refuses_a_missing_or_foreign_shard(kitti_root, tmp_path):
    store = str(tmp_path / "store")
    parts = [tmp_path / f"part{k}" for k in range(3)]
    for k in (0, 2):
        write_infos_shard(str(kitti_root), parts[k], k, 3, "kitti", store)
    with pytest.raises(InputError, match="expected shards 0..1 of 2"):
        merge_infos_shards(str(kitti_root), [parts[0], parts[2]], tmp_path / "merged", "kitti", store)
    assert not (tmp_path / "merged").exists()
    with pytest.raises(UsageError, match="shard 3 of 3"):
        write_infos_shard(str(kitti_root), tmp_path / "bad", 3, 3, "kitti", store)
    with pytest.raises(UsageError, match="shards 0: expected at least 1"):
        write_infos_shard(str(kitti_root), tmp_path / "bad", 0, 0, "kitti", store)


def test_convert_shards_merge_to_what_one_process_writes(kitti_root, tmp_path):
    store = str(tmp_path / "store")
    one = convert_with_store(str(kitti_root), tmp_path / "one", "kitti-3class", 0.2, 0, store)
    parts = [tmp_path / f"part{k}" for k in range(3)]
    for k, part in enumerate(parts):
        convert_shard_with_store(str(kitti_root), part, k, 3, "kitti-3class", 0.2, 0, store)
    merged = convert_with_store(str(kitti_root), tmp_path / "merged", "kitti-3class", 0.2, 0, store, parts[::-1])
    assert merged["dataset_version"] == one["dataset_version"]  # the same content: the same version
    assert_same_bytes(tmp_path / "one", tmp_path / "merged")  # annotations, splits, index.parquet, summary


def test_compiled_pipelines_retry_a_shard_alone_and_bound_the_shards_at_once(tmp_path):
    from admlops.pipelines.registry import PIPELINE_DIR, compile_pipeline

    for name, task in (("detection2d", "convert-shard"), ("detection3d", "infos-shard")):
        for profile in (None, "a100"):  # the committed YAML (test_pipelines keeps it current) and a cluster profile's
            path = compile_pipeline(name, tmp_path, profile) if profile else PIPELINE_DIR / f"{name}.yaml"
            spec = next(yaml.safe_load_all(path.read_text()))
            loops = [t for t in spec["root"]["dag"]["tasks"].values() if "iteratorPolicy" in t]
            (loop,) = loops
            expected = load_profile(profile).shard_parallelism if profile else 8
            assert loop["iteratorPolicy"]["parallelismLimit"] == expected
            inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
            (shard,) = [t for t in inner.values() if t["taskInfo"]["name"] == task]
            assert shard["retryPolicy"]["maxRetryCount"] == SHARD_RETRIES
            # the merge takes every shard's output (dsl.Collected), and nothing else runs per shard
            assert len(inner) == 1
