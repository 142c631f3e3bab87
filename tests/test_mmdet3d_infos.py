"""mmdet3d v2 infos: the same as mmdet3d's own tools/create_data.py kitti writes, and loadable by KittiDataset."""
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from admlops.components.convert.mmdet3d_infos import write_kitti_infos


def _reference_tools() -> Path | None:
    import mmdet3d

    tools = Path(mmdet3d.__file__).parent / ".mim"
    return tools if (tools / "tools" / "create_data.py").is_file() else None


@pytest.fixture(scope="module")
def infos(kitti_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("infos") / "infos"
    counts = write_kitti_infos(kitti_root, out)
    return out, counts


@pytest.fixture(scope="module")
def reference(kitti_root, tmp_path_factory):
    tools = _reference_tools()
    if tools is None:
        pytest.skip("mmdet3d's wheel ships no tools/create_data.py here")
    root = tmp_path_factory.mktemp("ref") / "kitti"
    shutil.copytree(kitti_root, root)
    # the reference also converts a test split and fails on an empty one: give it one frame
    for sub in ("image_2", "calib", "velodyne"):
        (root / "testing" / sub).mkdir(parents=True)
        src = next((root / "training" / sub).glob("000000.*"))
        shutil.copy(src, root / "testing" / sub / src.name)
    (root / "ImageSets" / "test.txt").write_text("000000\n")
    res = subprocess.run([sys.executable, "tools/create_data.py", "kitti", "--root-path", str(root), "--out-dir", str(root),
                          "--extra-tag", "kitti"], cwd=tools, env=dict(os.environ, PYTHONPATH=str(tools)),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def _load(path):
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("split", ["train", "val", "trainval"])
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
            for key in ("bbox_label", "bbox_label_3d", "difficulty", "occluded", "index", "group_id"):
                assert x[key] == y[key], key
            assert x["truncated"] == pytest.approx(y["truncated"]) and x["alpha"] == pytest.approx(y["alpha"])


def test_loads_in_mmdet3d_kitti_dataset(infos, kitti_root):
    from mmdet3d.datasets import KittiDataset
    from mmdet3d.utils import register_all_modules

    register_all_modules()
    out, counts = infos
    ds = KittiDataset(data_root=str(kitti_root), ann_file=str(out / "kitti_infos_train.pkl"),
                      data_prefix=dict(pts="training/velodyne", img="training/image_2"), pipeline=[],
                      metainfo=dict(classes=["Pedestrian", "Cyclist", "Car"]), test_mode=False)
    assert len(ds) == counts["train"]
    info = ds.get_data_info(0)
    assert Path(info["lidar_points"]["lidar_path"]).is_file()
    labels = info["ann_info"]["gt_labels_3d"]
    assert len(labels) and set(labels.tolist()) <= {-1, 0, 1, 2}
    assert info["ann_info"]["gt_bboxes_3d"].tensor.shape[1] == 7
