import hashlib
import pickle
from pathlib import Path

import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils import splits
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import points_in_box
from PIL import Image

from admlops.components.synth.nuscenes import CATEGORIES, VERSION, synth_nuscenes

SCENES, SAMPLES, SWEEPS = 2, 4, 2  # conftest's nuscenes_root


@pytest.fixture(scope="module")
def root(nuscenes_root) -> Path:
    return nuscenes_root


@pytest.fixture(scope="module")
def nusc(root) -> NuScenes:
    return NuScenes(version=VERSION, dataroot=str(root), verbose=False)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_tables_and_links(root, nusc):
    assert len(nusc.scene) == SCENES and len(nusc.sample) == SCENES * SAMPLES
    assert len(nusc.category) == len(CATEGORIES) == 23 and len(nusc.attribute) == 8 and len(nusc.visibility) == 4
    names = [s["name"] for s in nusc.scene]
    assert set(names) & set(splits.mini_train) and set(names) & set(splits.mini_val)
    lidar = [sd for sd in nusc.sample_data if sd["channel"] == "LIDAR_TOP"]
    assert sum(not sd["is_key_frame"] for sd in lidar) == SCENES * SAMPLES * SWEEPS
    assert all(len(t["token"]) == 32 for t in nusc.sample + nusc.sample_annotation + nusc.sample_data)
    for scene in nusc.scene:
        tokens, tok = [], scene["first_sample_token"]
        while tok:
            sample = nusc.get("sample", tok)
            assert sample["scene_token"] == scene["token"] and len(sample["data"]) == 7 and sample["anns"]
            assert (root / nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["filename"]).is_file()
            tokens.append(tok)
            tok = sample["next"]
        assert len(tokens) == scene["nbr_samples"] == SAMPLES and tokens[-1] == scene["last_sample_token"]
        # the LiDAR chain interleaves sweeps and keyframes by time, each file present
        sd = nusc.get("sample_data", nusc.get("sample", tokens[-1])["data"]["LIDAR_TOP"])
        chain = [sd]
        while sd["prev"]:
            sd = nusc.get("sample_data", sd["prev"])
            chain.append(sd)
        stamps = [s["timestamp"] for s in chain]
        assert len(chain) == SAMPLES * (SWEEPS + 1) and stamps == sorted(stamps, reverse=True)
        assert all((root / s["filename"]).is_file() for s in chain)
    for inst in nusc.instance:
        ann, n = nusc.get("sample_annotation", inst["first_annotation_token"]), 1
        while ann["next"]:
            ann, n = nusc.get("sample_annotation", ann["next"]), n + 1
        assert n == inst["nbr_annotations"] and ann["token"] == inst["last_annotation_token"]
    cam = nusc.get("sample_data", nusc.sample[0]["data"]["CAM_FRONT"])
    with Image.open(root / cam["filename"]) as im:
        assert im.format == "JPEG" and im.size == (1600, 900) == (cam["width"], cam["height"])


def test_num_lidar_pts_match_points_in_box(nusc):
    counts = []
    for sample in nusc.sample:
        path, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
        points = LidarPointCloud.from_file(path).points
        for box in boxes:
            ann = nusc.get("sample_annotation", box.token)
            assert ann["num_lidar_pts"] == int(points_in_box(box, points[:3]).sum())
            counts.append(ann["num_lidar_pts"])
    assert min(counts) == 0 and sum(c > 50 for c in counts) > len(counts) / 2  # far boxes empty, near ones well hit
    seen = {a["category_name"] for a in nusc.sample_annotation}
    assert {"vehicle.car", "human.pedestrian.adult", "vehicle.bicycle", "movable_object.trafficcone"} <= seen


def test_deterministic_by_seed(tmp_path):
    kw = dict(scenes=2, samples_per_scene=2, sweeps_per_sample=1)
    a = synth_nuscenes(tmp_path / "a", seed=7, workers=1, **kw)
    b = synth_nuscenes(tmp_path / "b", seed=7, workers=2, **kw)
    c = synth_nuscenes(tmp_path / "c", seed=8, workers=1, **kw)
    assert _digest(a) == _digest(b) != _digest(c)


def test_mmdet3d_reference_converter(nuscenes_reference):
    root = nuscenes_reference
    infos = {s: pickle.loads((root / f"nuscenes_infos_{s}.pkl").read_bytes()) for s in ("train", "val")}
    for split, info in infos.items():
        assert info["metainfo"]["version"] == VERSION and info["data_list"], split
        assert all(d["instances"] and d["lidar_sweeps"] and len(d["images"]) == 6 for d in info["data_list"])
    assert len(infos["train"]["data_list"]) + len(infos["val"]["data_list"]) == SCENES * SAMPLES
    db = pickle.loads((root / "nuscenes_dbinfos_train.pkl").read_bytes())
    assert {"car", "pedestrian", "bicycle", "traffic_cone"} <= set(db)
    assert any(p.suffix == ".bin" for p in (root / "nuscenes_gt_database").iterdir())
