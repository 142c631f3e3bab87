"""The mmdet3d data root (v2 infos, reduced scans, GT database): the same as mmdet3d's own
tools/create_data.py kitti writes, and loadable by KittiDataset and the ObjectSample database sampler."""
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from admlops.components.infos.kitti import write_kitti_infos


def _reference_tools() -> Path | None:
    import mmdet3d

    tools = Path(mmdet3d.__file__).parent / ".mim"
    return tools if (tools / "tools" / "create_data.py").is_file() else None


@pytest.fixture(scope="module")
def kitti_copy(kitti_root, tmp_path_factory):
    """The synthetic KITTI set plus a one-frame ``testing/`` split (the reference fails on an empty one)."""
    root = tmp_path_factory.mktemp("kitti") / "kitti"
    shutil.copytree(kitti_root, root)
    for sub in ("image_2", "calib", "velodyne"):
        (root / "testing" / sub).mkdir(parents=True)
        src = next((root / "training" / sub).glob("000000.*"))
        shutil.copy(src, root / "testing" / sub / src.name)
    (root / "ImageSets" / "test.txt").write_text("000000\n")
    return root


@pytest.fixture(scope="module")
def infos(kitti_copy, tmp_path_factory):
    out = tmp_path_factory.mktemp("infos") / "infos"
    counts = write_kitti_infos(kitti_copy, out)
    return out, counts


@pytest.fixture(scope="module")
def reference(kitti_copy, infos):
    tools = _reference_tools()
    if tools is None:
        pytest.skip("mmdet3d's wheel ships no tools/create_data.py here")
    # the reference writes into the dataset root; ours has been written already (fixture order)
    res = subprocess.run([sys.executable, "tools/create_data.py", "kitti", "--root-path", str(kitti_copy), "--out-dir",
                          str(kitti_copy), "--extra-tag", "kitti"], cwd=tools, env=dict(os.environ, PYTHONPATH=str(tools)),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return kitti_copy


def _load(path):
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("split", ["train", "val", "trainval", "test"])
def test_matches_reference(infos, reference, split):
    ours = _load(infos[0] / f"kitti_infos_{split}.pkl")
    ref = _load(reference / f"kitti_infos_{split}.pkl")
    assert ours["metainfo"]["categories"] == ref["metainfo"]["categories"]
    assert [d["sample_idx"] for d in ours["data_list"]] == [d["sample_idx"] for d in ref["data_list"]]
    for a, b in zip(ours["data_list"], ref["data_list"], strict=True):
        for cam in ("CAM0", "CAM1", "CAM2", "CAM3"):
            for key in ("cam2img", "lidar2img") + (("lidar2cam",) if cam == "CAM2" else ()):
                np.testing.assert_allclose(a["images"][cam][key], b["images"][cam][key], atol=1e-5, err_msg=f"{cam} {key}")
        np.testing.assert_allclose(a["images"]["R0_rect"], b["images"]["R0_rect"], atol=1e-5)
        for key in ("img_path", "height", "width"):
            assert a["images"]["CAM2"][key] == b["images"]["CAM2"][key]
        for key in ("Tr_velo_to_cam", "Tr_imu_to_velo"):
            np.testing.assert_allclose(a["lidar_points"][key], b["lidar_points"][key], atol=1e-5)
        assert a["lidar_points"]["lidar_path"] == b["lidar_points"]["lidar_path"]
        assert len(a["instances"]) == len(b["instances"])
        for x, y in zip(a["instances"], b["instances"], strict=True):
            for key in ("bbox", "bbox_3d"):
                np.testing.assert_allclose(x[key], y[key], atol=1e-5, err_msg=key)
            # the reference projects in float32 (torch): ~1e-7 relative, i.e. up to 1e-4 px at x=1000
            np.testing.assert_allclose(x["center_2d"], y["center_2d"], rtol=1e-6)
            assert x["depth"] == pytest.approx(y["depth"], rel=1e-6)
            for key in ("bbox_label", "bbox_label_3d", "difficulty", "occluded", "index", "group_id", "num_lidar_pts"):
                assert x[key] == y[key], key
            assert x["truncated"] == pytest.approx(y["truncated"]) and x["alpha"] == pytest.approx(y["alpha"])
        assert a.keys() == b.keys()
        if "cam_instances" in b:
            assert len(a["cam_instances"]["CAM2"]) == len(b["cam_instances"]["CAM2"])
            for x, y in zip(a["cam_instances"]["CAM2"], b["cam_instances"]["CAM2"], strict=True):
                assert x.keys() == y.keys()
                for key in ("bbox", "bbox_3d", "center_2d", "depth"):  # the reference projects float32 corners
                    np.testing.assert_allclose(x[key], y[key], rtol=1e-6, atol=1e-5, err_msg=key)
                for key in ("bbox_label", "bbox_label_3d", "bbox_3d_isvalid", "velocity"):
                    assert x[key] == y[key], key


def test_reader_points_per_box_match_reference(reference):
    from admlops.components.convert.readers import read_kitti_frame

    for info in _load(reference / "kitti_infos_trainval.pkl")["data_list"]:
        frame = read_kitti_frame(reference / "training", f"{info['sample_idx']:06d}")
        ours = [o.attributes.get("num_lidar_pts", -1) for o in frame.objects]
        assert ours == [i["num_lidar_pts"] for i in info["instances"]]


def test_reduced_scans_match_reference(infos, reference):
    ours = sorted((infos[0] / "training" / "velodyne_reduced").glob("*.bin"))
    assert [p.name for p in ours] == sorted(p.name for p in (reference / "training" / "velodyne_reduced").glob("*.bin"))
    for path in ours:
        assert path.read_bytes() == (reference / "training" / "velodyne_reduced" / path.name).read_bytes(), path.name


def test_gt_database_matches_reference(infos, reference):
    ours, ref = _load(infos[0] / "kitti_dbinfos_train.pkl"), _load(reference / "kitti_dbinfos_train.pkl")
    # the reference names entries by position in the train list (mmengine overwrites sample_idx); ours by frame id
    frame_of = [d["sample_idx"] for d in _load(reference / "kitti_infos_train.pkl")["data_list"]]
    assert {k: len(v) for k, v in ours.items()} == {k: len(v) for k, v in ref.items()}
    for name in ref:
        for x, y in zip(ours[name], ref[name], strict=True):
            assert x.keys() == y.keys()
            assert x["image_idx"] == frame_of[y["image_idx"]]
            assert x["path"] == f"kitti_gt_database/{x['image_idx']}_{name}_{x['gt_idx']}.bin"
            for key in ("name", "gt_idx", "difficulty", "group_id", "score"):
                assert x[key] == y[key], key
            np.testing.assert_allclose(x["box3d_lidar"], y["box3d_lidar"], atol=1e-5)
            # the reference tests points against float32 box planes: points lying on a face may flip
            assert abs(x["num_points_in_gt"] - y["num_points_in_gt"]) <= max(1, y["num_points_in_gt"] // 100)
            pts = np.fromfile(infos[0] / x["path"], dtype=np.float32).reshape(-1, 4)
            ref_pts = np.fromfile(reference / y["path"], dtype=np.float32).reshape(-1, 4)
            assert len(pts) == x["num_points_in_gt"]
            if len(pts) == len(ref_pts):  # same points in scan order, relative to a box centre equal to ~1e-6
                np.testing.assert_allclose(pts, ref_pts, atol=1e-4)


def test_loads_in_mmdet3d_kitti_dataset(infos):
    from mmdet3d.datasets import KittiDataset

    from admlops import compat

    compat.apply()
    from mmdet3d.utils import register_all_modules

    register_all_modules()
    out, counts = infos
    classes = ["Pedestrian", "Cyclist", "Car"]
    # the data root is the output directory, laid out as mmdet3d's KITTI configs expect
    ds = KittiDataset(data_root=str(out), ann_file="kitti_infos_train.pkl",
                      data_prefix=dict(pts="training/velodyne_reduced", img="training/image_2"),
                      pipeline=[dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=4, use_dim=4),
                                dict(type="LoadAnnotations3D", with_bbox_3d=True, with_label_3d=True),
                                dict(type="ObjectSample", db_sampler=dict(
                                    data_root=str(out), info_path=str(out / "kitti_dbinfos_train.pkl"), rate=1.0, classes=classes,
                                    prepare=dict(filter_by_difficulty=[-1], filter_by_min_points=dict(Car=5)),
                                    sample_groups=dict(Car=15, Pedestrian=10, Cyclist=10))),
                                dict(type="Pack3DDetInputs", keys=["points", "gt_bboxes_3d", "gt_labels_3d"])],
                      metainfo=dict(classes=classes), test_mode=False)
    assert len(ds) == counts["train"]
    info = ds.get_data_info(0)
    assert (out / "training" / "image_2" / info["images"]["CAM2"]["img_path"]).is_file()
    assert Path(info["lidar_points"]["lidar_path"]).is_file()
    labels = info["ann_info"]["gt_labels_3d"]
    assert len(labels) and set(labels.tolist()) <= {-1, 0, 1, 2}
    assert info["ann_info"]["gt_bboxes_3d"].tensor.shape[1] == 7
    np.random.seed(0)  # ObjectSample draws with numpy's global generator
    sample = ds[0]  # loads the reduced scan and pastes database objects into it
    n_scan = len(np.fromfile(info["lidar_points"]["lidar_path"], dtype=np.float32)) // 4
    pasted = sample["data_samples"].gt_instances_3d.labels_3d
    assert len(pasted) > (info["ann_info"]["gt_labels_3d"] >= 0).sum()  # database objects were added
    assert len(sample["inputs"]["points"]) > 0 and n_scan > 0


def test_bad_frames_are_skipped_and_listed_or_fail_when_strict(kitti_root, tmp_path):
    from admlops.components.convert.records import Skips
    from admlops.errors import InputError

    root = tmp_path / "kitti"
    shutil.copytree(kitti_root, root)
    (root / "training" / "calib" / "000004.txt").unlink()
    label = root / "training" / "label_2" / "000007.txt"
    lines = label.read_text().splitlines()
    lines[0] = " ".join(lines[0].split()[:14])
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        write_kitti_infos(root, tmp_path / "strict")
    assert "calib/000004.txt" in str(err.value) or "label_2/000007.txt:1" in str(err.value)
    assert not (tmp_path / "strict").exists()

    skips = Skips(strict=False)
    counts = write_kitti_infos(root, tmp_path / "out", skips=skips)
    report = json.loads((tmp_path / "out" / "skipped.json").read_text())
    assert report["skipped"] == len(report["samples"]) == 2
    assert {(s["sample"], Path(s["file"]).name, s["line"]) for s in report["samples"]} == {
        ("training/000004", "000004.txt", None), ("training/000007", "000007.txt", 1)}
    assert counts["trainval"] == 18
    ids = {d["sample_idx"] for d in _load(tmp_path / "out" / "kitti_infos_trainval.pkl")["data_list"]}
    assert 4 not in ids and 7 not in ids and len(ids) == 18


def test_non_numeric_frame_id_names_split_file_and_line(kitti_root, tmp_path):
    """mmdet3d's sample_idx is the frame id as an integer: an id that is none is a bad sample, not a ValueError."""
    from admlops.components.convert.records import Skips
    from admlops.errors import InputError

    root = (tmp_path / "kitti").resolve()  # as the writer names files
    shutil.copytree(kitti_root, root)
    train = root / "ImageSets" / "train.txt"
    ids = train.read_text().split()
    train.write_text("\n".join([*ids, "frame_x"]) + "\n")
    for sub, ext in (("label_2", "txt"), ("image_2", "png"), ("calib", "txt"), ("velodyne", "bin")):  # a whole frame
        shutil.copy(root / "training" / sub / f"{ids[0]}.{ext}", root / "training" / sub / f"frame_x.{ext}")
    message = "frame id 'frame_x' is not a number (mmdet3d's sample_idx is the frame id as an integer)"
    with pytest.raises(InputError) as err:
        write_kitti_infos(root, tmp_path / "strict", workers=1)
    assert (err.value.path, err.value.line, err.value.message) == (str(train), len(ids) + 1, message)
    assert not (tmp_path / "strict").exists()

    counts = write_kitti_infos(root, tmp_path / "out", workers=1, skips=Skips(strict=False))
    report = json.loads((tmp_path / "out" / "skipped.json").read_text())
    assert report == {"skipped": 1, "samples": [{"sample": "training/frame_x", "file": str(train), "line": len(ids) + 1,
                                                 "message": message}]}
    assert counts["train"] == len(ids)


def test_split_frame_without_files_names_the_split_file_and_line_as_convert_does(kitti_root, tmp_path, capsys):
    """A split file listing a frame that has no files: `data infos` names the split file and line, as `data
    convert` does, not `label_2/<id>.txt: label without image` (a file that does not exist); without --strict the
    frame is skipped and listed so."""
    from admlops.pipelines.cli import main

    root = (tmp_path / "kitti").resolve()
    shutil.copytree(kitti_root, root)
    train = root / "ImageSets" / "train.txt"
    ids = train.read_text().split()
    train.write_text("\n".join([*ids[:2], "999999", *ids[2:]]) + "\n")
    expected = f"admlops: error: {train}:3: frame '999999' has no label in training/label_2"

    assert main(["data", "infos", str(root), str(tmp_path / "strict"), "--strict"]) == 3
    err = capsys.readouterr().err
    assert expected in err.splitlines() and "label without image" not in err
    assert not (tmp_path / "strict").exists()
    assert main(["data", "convert", str(root), str(tmp_path / "coco"), "--strict"]) == 3
    assert expected in capsys.readouterr().err.splitlines()

    assert main(["data", "infos", str(root), str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "skipped.json").read_text())
    assert report == {"skipped": 1, "samples": [{"sample": "training/999999", "file": str(train), "line": 3,
                                                 "message": "frame '999999' has no label in training/label_2"}]}
    assert [d["sample_idx"] for d in _load(tmp_path / "out" / "kitti_infos_train.pkl")["data_list"]] == list(map(int, ids))


def test_test_split_frame_without_an_image_names_the_split_file(kitti_copy, tmp_path):
    from admlops.errors import InputError

    root = (tmp_path / "kitti").resolve()
    shutil.copytree(kitti_copy, root)
    test = root / "ImageSets" / "test.txt"
    test.write_text("000000\n000001\n")  # testing/ holds frame 000000 only
    with pytest.raises(InputError) as err:
        write_kitti_infos(root, tmp_path / "out", workers=1)
    assert (err.value.path, err.value.line, err.value.message) == (
        str(test), 2, "frame '000001' has no image in testing/image_2")
