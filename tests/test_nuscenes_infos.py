"""nuScenes -> mmdet3d data root: the same infos and GT database as mmdet3d's own create_data.py nuscenes,
loadable by NuScenesDataset with the ObjectSample sampler, and bad tables reported by file and token."""
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from admlops.components.infos.nuscenes import write_nuscenes_infos
from admlops.errors import InputError


@pytest.fixture(scope="module")
def infos(nuscenes_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("nusinfos") / "infos"
    return out, write_nuscenes_infos(nuscenes_root, out, version="v1.0-mini", workers=2)


def _load(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def _same(ours, ref, where=""):
    """Recursive equality: numbers to 1e-5 (NaN velocities equal), strings and keys exactly."""
    if isinstance(ref, dict):
        assert ours.keys() == ref.keys(), where
        for key in ref:
            _same(ours[key], ref[key], f"{where}.{key}")
    elif isinstance(ref, (list, tuple)) and ref and isinstance(ref[0], (dict, list, str)):
        assert len(ours) == len(ref), where
        for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
            _same(a, b, f"{where}[{i}]")
    elif isinstance(ref, str):
        assert ours == ref, where
    else:
        np.testing.assert_allclose(np.asarray(ours, dtype=float), np.asarray(ref, dtype=float), rtol=1e-5, atol=1e-5,
                                   err_msg=where)


@pytest.mark.parametrize("split", ["train", "val"])
def test_infos_match_reference(infos, nuscenes_reference, split):
    ours, ref = _load(infos[0] / f"nuscenes_infos_{split}.pkl"), _load(nuscenes_reference / f"nuscenes_infos_{split}.pkl")
    assert ours["metainfo"] == ref["metainfo"]
    assert len(ours["data_list"]) == len(ref["data_list"]) == infos[1][split] > 0
    for a, b in zip(ours["data_list"], ref["data_list"], strict=True):
        # two deliberate differences: sweep paths relative to the data root (the reference keeps its
        # --root-path prefix) and num_pts_feats = 5 where the reference leaves None
        for sa, sb in zip(a.get("lidar_sweeps", []), b.get("lidar_sweeps", []), strict=True):
            assert Path(sb["lidar_points"]["lidar_path"]).parts[-3:] == Path(sa["lidar_points"]["lidar_path"]).parts
            assert sa["lidar_points"].pop("num_pts_feats") == 5 and sb["lidar_points"].pop("num_pts_feats") is None
            sa["lidar_points"]["lidar_path"] = sb["lidar_points"]["lidar_path"]
        # the reference projects box centres in float32: up to ~1e-4 px
        for cam, objs in b.get("cam_instances", {}).items():
            for x, y in zip(a["cam_instances"][cam], objs, strict=True):
                np.testing.assert_allclose(x.pop("center_2d"), y.pop("center_2d"), atol=1e-3)
        _same(a, b, f"{split}[{b['sample_idx']}]")
    assert any(d.get("lidar_sweeps") for d in ours["data_list"]) and any(d["cam_instances"]["CAM_FRONT"] for d in ours["data_list"])


def test_gt_database_matches_reference(infos, nuscenes_reference):
    ours, ref = _load(infos[0] / "nuscenes_dbinfos_train.pkl"), _load(nuscenes_reference / "nuscenes_dbinfos_train.pkl")
    assert {k: len(v) for k, v in ours.items()} == {k: len(v) for k, v in ref.items()}
    for name in ref:
        for x, y in zip(ours[name], ref[name], strict=True):
            assert x.keys() == y.keys()
            for key in ("name", "path", "image_idx", "gt_idx", "difficulty", "group_id"):
                assert x[key] == y[key], key
            np.testing.assert_allclose(x["box3d_lidar"], y["box3d_lidar"], atol=1e-5)
            assert abs(x["num_points_in_gt"] - y["num_points_in_gt"]) <= max(1, y["num_points_in_gt"] // 100)
            pts = np.fromfile(infos[0] / x["path"], dtype=np.float32).reshape(-1, 5)
            assert len(pts) == x["num_points_in_gt"]
            ref_pts = np.fromfile(nuscenes_reference / y["path"], dtype=np.float32).reshape(-1, 5)
            if len(pts) == len(ref_pts):
                np.testing.assert_allclose(pts, ref_pts, atol=1e-4)


def test_loads_in_mmdet3d_nuscenes_dataset(infos):
    from mmdet3d.datasets import NuScenesDataset
    from mmdet3d.utils import register_all_modules

    from admlops import compat

    compat.apply()
    register_all_modules()
    out, counts = infos
    classes = ["car", "truck", "trailer", "bus", "construction_vehicle", "bicycle", "motorcycle", "pedestrian",
               "traffic_cone", "barrier"]
    load = [dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
            dict(type="LoadPointsFromMultiSweeps", sweeps_num=10, use_dim=[0, 1, 2, 3, 4], pad_empty_sweeps=True,
                 remove_close=True, test_mode=True)]
    ds = NuScenesDataset(
        data_root=str(out), ann_file="nuscenes_infos_train.pkl", metainfo=dict(classes=classes),
        data_prefix=dict(pts="samples/LIDAR_TOP", img="", sweeps="sweeps/LIDAR_TOP"), test_mode=False,
        pipeline=[*load, dict(type="LoadAnnotations3D", with_bbox_3d=True, with_label_3d=True),
                  dict(type="ObjectSample", db_sampler=dict(
                      data_root=str(out), info_path=str(out / "nuscenes_dbinfos_train.pkl"), rate=1.0, classes=classes,
                      prepare=dict(filter_by_min_points=dict(car=5)), sample_groups=dict(car=4, pedestrian=4),
                      points_loader=dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=[0, 1, 2, 3, 4]))),
                  dict(type="Pack3DDetInputs", keys=["points", "gt_bboxes_3d", "gt_labels_3d"])])
    assert len(ds) == counts["train"]
    np.random.seed(0)
    sample = ds[1]
    assert len(sample["inputs"]["points"]) > 0 and sample["data_samples"].gt_instances_3d.bboxes_3d.tensor.shape[1] == 9
    assert len(sample["data_samples"].gt_instances_3d.labels_3d) > 0


def _broken_copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src / "v1.0-mini", dst / "v1.0-mini")
    for sub in ("samples", "sweeps", "maps"):
        (dst / sub).symlink_to(src / sub)
    edit(dst / "v1.0-mini")
    return dst


def test_token_pointing_nowhere_names_table_and_token(nuscenes_root, tmp_path):
    def edit(tables):
        anns = json.loads((tables / "sample_annotation.json").read_text())
        anns[3]["instance_token"] = "f" * 32
        (tables / "sample_annotation.json").write_text(json.dumps(anns))

    root = _broken_copy(nuscenes_root, tmp_path / "nus", edit)
    with pytest.raises(InputError) as err:
        write_nuscenes_infos(root, tmp_path / "out", version="v1.0-mini", workers=1)
    assert err.value.path.endswith("sample_annotation.json") and "f" * 32 in err.value.message
    assert not (tmp_path / "out").exists()


def test_missing_scan_and_bad_table(nuscenes_root, tmp_path):
    root = _broken_copy(nuscenes_root, tmp_path / "a", lambda t: (t / "ego_pose.json").write_text('[{"token": 1,'))
    with pytest.raises(InputError) as err:
        write_nuscenes_infos(root, tmp_path / "out", version="v1.0-mini")
    assert err.value.path.endswith("ego_pose.json") and err.value.line == 1

    def drop_scan(tables):
        sds = json.loads((tables / "sample_data.json").read_text())
        key = next(sd for sd in sds if sd["is_key_frame"] and "LIDAR_TOP" in sd["filename"])
        key["filename"] = "samples/LIDAR_TOP/missing.pcd.bin"
        (tables / "sample_data.json").write_text(json.dumps(sds))

    root = _broken_copy(nuscenes_root, tmp_path / "b", drop_scan)
    with pytest.raises(InputError, match="missing.pcd.bin not found"):
        write_nuscenes_infos(root, tmp_path / "out", version="v1.0-mini")
    assert not (tmp_path / "out").exists()


def test_reader_frames_agree_with_reference_cam_instances(nuscenes_reference):
    from admlops.components.convert.readers import read_nuscenes

    frames = list(read_nuscenes(nuscenes_reference, version="v1.0-mini"))
    ref = _load(nuscenes_reference / "nuscenes_infos_train.pkl")["data_list"] + \
        _load(nuscenes_reference / "nuscenes_infos_val.pkl")["data_list"]
    assert len(frames) == 6 * len(ref)
    by_image = {Path(f.image).name: f for f in frames}
    for info in ref:
        for cam, objs in info["cam_instances"].items():
            frame = by_image[info["images"][cam]["img_path"]]
            assert frame.width == 1600 and frame.height == 900 and frame.group.startswith("scene-")
            mapped = [o for o in frame.objects if o.label in _MMDET3D_NAMES]  # the reference drops unmapped classes
            assert len(mapped) == len(objs)
            for o, r in zip(mapped, objs, strict=True):
                np.testing.assert_allclose(o.bbox, r["bbox"], atol=1e-6)
                h, w, length = o.box3d["dimensions"]
                np.testing.assert_allclose([length, h, w], r["bbox_3d"][3:6], atol=1e-6)
                np.testing.assert_allclose(np.add(o.box3d["location"], (0, -h / 2, 0)), r["bbox_3d"][:3], atol=1e-6)


def test_convert_to_coco_keeps_scenes_whole(nuscenes_root, tmp_path):
    from admlops.components.convert.to_coco import convert_to_coco

    summary = convert_to_coco("nuscenes", nuscenes_root, tmp_path / "coco", "road-3class", val_fraction=0.5, seed=1,
                              version="v1.0-mini")
    assert summary["frames"]["train"] + summary["frames"]["val"] == 6 * 8
    scene_of = {}
    for split in ("train", "val"):
        coco = json.loads((tmp_path / "coco" / "annotations" / f"{split}.json").read_text())
        for im in coco["images"]:
            scene_of.setdefault(split, set()).add(im["file_name"].split("__")[0])
        assert all(a["bbox"][2] > 0 and a["bbox"][3] > 0 for a in coco["annotations"])
    # every frame of a scene (one log per scene here) lands in the same split
    assert not scene_of.get("train", set()) & scene_of.get("val", set())


_MMDET3D_NAMES = {"movable_object.barrier", "vehicle.bicycle", "vehicle.bus.bendy", "vehicle.bus.rigid", "vehicle.car",
                  "vehicle.construction", "vehicle.motorcycle", "human.pedestrian.adult", "human.pedestrian.child",
                  "human.pedestrian.construction_worker", "human.pedestrian.police_officer", "movable_object.trafficcone",
                  "vehicle.trailer", "vehicle.truck"}


def test_bad_sample_skipped_and_listed(nuscenes_root, tmp_path):
    from admlops.components.convert.records import Skips

    def edit(tables):
        anns = json.loads((tables / "sample_annotation.json").read_text())
        anns[3]["instance_token"] = "f" * 32
        (tables / "sample_annotation.json").write_text(json.dumps(anns))
        return anns[3]["sample_token"]

    root = _broken_copy(nuscenes_root, tmp_path / "nus", edit)
    bad_sample = json.loads((root / "v1.0-mini" / "sample_annotation.json").read_text())[3]["sample_token"]
    skips = Skips(strict=False)
    counts = write_nuscenes_infos(root, tmp_path / "out", version="v1.0-mini", workers=1, skips=skips)
    report = json.loads((tmp_path / "out" / "skipped.json").read_text())
    assert report["skipped"] == len(report["samples"]) == 1
    assert report["samples"][0]["sample"] == f"sample {bad_sample}" and "f" * 32 in report["samples"][0]["message"]
    assert counts["train"] + counts["val"] == 7


# Broken links, resolved per sample: each edit of the tables returns the samples it makes bad, as
# (skipped sample, file, message) in the infos writer's naming; a bad sample is listed, the others written.
def _rows(tables: Path, name: str) -> list[dict]:
    return json.loads((tables / f"{name}.json").read_text())


def _write(tables: Path, name: str, rows: list[dict]) -> None:
    (tables / f"{name}.json").write_text(json.dumps(rows))


def _keyframe(tables: Path, channel: str) -> tuple[list[dict], dict]:
    """The sample_data rows and the first keyframe of ``channel`` among them."""
    sensors = {s["token"]: s["channel"] for s in _rows(tables, "sensor")}
    channel_of = {c["token"]: sensors[c["sensor_token"]] for c in _rows(tables, "calibrated_sensor")}
    sds = _rows(tables, "sample_data")
    return sds, next(sd for sd in sds if sd["is_key_frame"] and channel_of[sd["calibrated_sensor_token"]] == channel)


def _nowhere(record: dict, field: str, token: str, table: str) -> str:
    return f"record {record['token']!r}: {field} {token!r} points nowhere in {table}.json"


def orphan_keyframe(tables):
    sds, sd = _keyframe(tables, "CAM_FRONT")
    sample, sd["sample_token"] = sd["sample_token"], "e" * 32
    _write(tables, "sample_data", sds)
    return [(f"sample_data {sd['token']}", "sample_data.json", _nowhere(sd, "sample_token", "e" * 32, "sample")),
            (f"sample {sample}", "sample_data.json", f"sample {sample!r} has no CAM_FRONT keyframe")]


def sample_of_no_scene(tables):
    samples = _rows(tables, "sample")
    samples[2]["scene_token"] = "d" * 32
    _write(tables, "sample", samples)
    return [(f"sample {samples[2]['token']}", "sample.json", _nowhere(samples[2], "scene_token", "d" * 32, "scene"))]


def keyframe_of_no_sensor(tables):
    sds, sd = _keyframe(tables, "CAM_FRONT")
    sd["calibrated_sensor_token"] = "c" * 32
    _write(tables, "sample_data", sds)
    message = _nowhere(sd, "calibrated_sensor_token", "c" * 32, "calibrated_sensor")
    return [(f"sample {sd['sample_token']}", "sample_data.json", message)]


def unknown_category(tables):
    instances = _rows(tables, "instance")
    inst = instances[0]
    inst["category_token"] = "b" * 32
    _write(tables, "instance", instances)
    samples = sorted({a["sample_token"] for a in _rows(tables, "sample_annotation") if a["instance_token"] == inst["token"]})
    return [(f"sample {s}", "instance.json", _nowhere(inst, "category_token", "b" * 32, "category")) for s in samples]


def orphan_annotation(tables):
    anns = _rows(tables, "sample_annotation")
    ann = anns[5]
    ann["sample_token"] = "a" * 32
    _write(tables, "sample_annotation", anns)
    message = _nowhere(ann, "sample_token", "a" * 32, "sample")
    # its neighbours along the instance need its time for their velocity: their samples are bad too
    neighbours = sorted({a["sample_token"] for a in anns if ann["token"] in (a["prev"], a["next"])})
    return [(f"sample_annotation {ann['token']}", "sample_annotation.json", message)] + \
        [(f"sample {s}", "sample_annotation.json", message) for s in neighbours]


def _listed(out: Path) -> list[tuple]:
    report = json.loads((out / "skipped.json").read_text())
    assert report["skipped"] == len(report["samples"])
    return [(s["sample"], Path(s["file"]).name, s["message"]) for s in report["samples"]]


@pytest.mark.parametrize("edit", [orphan_keyframe, sample_of_no_scene, keyframe_of_no_sensor, unknown_category,
                                  orphan_annotation])
def test_dangling_token_skips_its_sample_only(nuscenes_root, tmp_path, edit):
    from admlops.components.convert.records import Skips

    expected = []
    root = _broken_copy(nuscenes_root, tmp_path / "nus", lambda tables: expected.extend(edit(tables)))
    bad = {sample.removeprefix("sample ") for sample, _, _ in expected if sample.startswith("sample ")}
    assert expected and bad
    with pytest.raises(InputError) as err:
        write_nuscenes_infos(root, tmp_path / "strict", version="v1.0-mini", workers=1)
    assert (Path(err.value.path).name, err.value.message) in {(f, m) for _, f, m in expected}
    assert not (tmp_path / "strict").exists()

    counts = write_nuscenes_infos(root, tmp_path / "out", version="v1.0-mini", workers=1, skips=Skips(strict=False))
    assert sorted(_listed(tmp_path / "out")) == sorted(expected)
    written = {d["token"] for split in counts for d in _load(tmp_path / "out" / f"nuscenes_infos_{split}.pkl")["data_list"]}
    assert written == {s["token"] for s in _rows(root / "v1.0-mini", "sample")} - bad


@pytest.mark.parametrize("edit", [orphan_keyframe, unknown_category])
def test_reader_skips_and_lists_frames_of_dangling_tokens(nuscenes_root, tmp_path, edit):
    from admlops.components.convert.records import Skips
    from admlops.components.convert.to_coco import convert_to_coco
    from admlops.dataset_formats.nuscenes import CAMERAS

    expected = []
    root = _broken_copy(nuscenes_root, tmp_path / "nus", lambda tables: expected.extend(edit(tables)))
    # the reader's frames are per camera: a sample the writer skips is a frame per camera, or the one of the camera
    # it lacks ("sample '...' has no CAM_FRONT keyframe"); a record of no sample is listed as it is
    frames = []
    for sample, file, message in expected:
        cams = [message.split()[-2]] if message.endswith(" keyframe") else CAMERAS
        frames += [(f"{sample.removeprefix('sample ')}/{cam}", file, message) for cam in cams] \
            if sample.startswith("sample ") else [(sample, file, message)]
    with pytest.raises(InputError):
        convert_to_coco("nuscenes", root, tmp_path / "strict", "road-3class", version="v1.0-mini")
    summary = convert_to_coco("nuscenes", root, tmp_path / "coco", "road-3class", version="v1.0-mini", skips=Skips(strict=False))
    assert sorted(_listed(tmp_path / "coco")) == sorted(frames)
    assert summary["frames"]["train"] + summary["frames"]["val"] == 6 * 8 - len([f for f in frames if "/" in f[0]])
