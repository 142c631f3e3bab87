"""nuScenes 3D detection through the product's one command set: CenterPoint on LiDAR
(configs/models/centerpoint_pillar_nuscenes_cpu.py) and FCOS3D on the cameras (configs/models/fcos3d_nuscenes_cpu.py)
on an mmdet3d nuScenes data root written by ``admlops data infos --from nuscenes``, trained by the train step and
evaluated with mmdet3d's NuScenesMetric (the nuScenes devkit); the metric on known boxes, LiDAR and camera; bad
input named by file."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_det3d import _cli, _infos, _rewrite_infos

from admlops.errors import InputError, UsageError

CLASSES = ("car", "truck", "trailer", "bus", "construction_vehicle", "bicycle", "motorcycle", "pedestrian",
           "traffic_cone", "barrier")
SYNTH_CLASSES = {"car", "truck", "pedestrian", "bicycle", "barrier", "traffic_cone"}  # what synth_nuscenes places
LIDAR, CAMERA = "centerpoint_pillar_nuscenes_cpu", "fcos3d_nuscenes_cpu"


def _stock_centerpoint() -> str:
    """mmdet3d's own CenterPoint pillar config, which ours starts from."""
    import mmdet3d

    return str(Path(mmdet3d.__file__).parent / ".mim" / "configs" / "centerpoint"
               / "centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Two synthetic scenes (one train, one val) of 3 keyframes with 2 sweeps each, as an mmdet3d data root."""
    from admlops.components.infos.nuscenes import write_nuscenes_infos
    from admlops.components.synth.nuscenes import synth_nuscenes

    tmp = tmp_path_factory.mktemp("det3d_nus")
    source = synth_nuscenes(tmp / "nuscenes", scenes=2, samples_per_scene=3, sweeps_per_sample=2, seed=5, workers=2)
    write_nuscenes_infos(source, tmp / "root", version="v1.0-mini", workers=2)
    return tmp / "root"


def _config(data_root, name=LIDAR, **kwargs):
    from mmengine.config import Config

    from admlops import compat
    from admlops.configs import resolve
    from admlops.mmconfig import use_dataset

    compat.apply()
    cfg = Config.fromfile(str(resolve("models", name)) if "/" not in name else name)
    use_dataset(cfg, data_root, **kwargs)
    return cfg


def _copy(data_root: Path, tmp_path: Path, follow_links: bool = False) -> Path:
    """A copy to spoil: infos and GT database always copied, the linked samples/sweeps/tables too with
    ``follow_links`` (deleting a file in a linked folder would delete it from the module's source)."""
    dest = tmp_path / "root"
    shutil.copytree(data_root, dest, symlinks=not follow_links)
    return dest


def _nuscenes_metrics_of(cfg, predict, tmp_path) -> dict:
    """NuScenesMetric, built from the config as the test loop builds it, over the val split with ``predict(ann)``'s
    boxes and labels per dataset item (a LiDAR frame, or one camera image of a frame for a camera config), through
    mmengine's Evaluator; as evaluate reports it."""
    import torch
    from mmdet3d.registry import DATASETS
    from mmdet3d.structures import Det3DDataSample
    from mmdet3d.utils import register_all_modules
    from mmengine.evaluator import Evaluator
    from mmengine.structures import InstanceData

    from admlops.tasks.nuscenes_detection import classes_with_ground_truth, nuscenes_metrics

    register_all_modules()
    dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, pipeline=[]))
    evaluator = Evaluator(dict(cfg.test_evaluator, jsonfile_prefix=str(tmp_path / "detections")))
    evaluator.dataset_meta = dataset.metainfo
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        ann = info["eval_ann_info"]
        boxes, labels = predict(ann)
        sample = Det3DDataSample(metainfo=dict(sample_idx=info["sample_idx"]))
        labels = torch.as_tensor(labels)
        sample.pred_instances_3d = InstanceData(bboxes_3d=boxes, labels_3d=labels,
                                                scores_3d=torch.linspace(1.0, 0.5, len(labels)))
        if "attr_labels" in ann:  # camera instances carry attributes, which camera models predict
            sample.pred_instances_3d.attr_labels = torch.as_tensor(ann["attr_labels"]).reshape(-1)[:len(labels)]
        sample.pred_instances = InstanceData()
        evaluator.process([sample])
    classes = dataset.metainfo["classes"]
    scored = classes_with_ground_truth(cfg.test_evaluator.ann_file, classes)
    return nuscenes_metrics(evaluator.evaluate(len(dataset)), classes, scored)


def _ground_truth(shift: float = 0.0, label: int | None = None):
    """Predictions: the ground truth, moved ``shift`` m along the LiDAR's x axis (camera boxes: along the camera's x
    axis), all of class ``label`` if given."""
    def predict(ann):
        boxes = ann["gt_bboxes_3d"].clone()
        boxes.tensor[:, 0] += shift
        labels = ann["gt_labels_3d"] if label is None else np.full(len(boxes), label)
        return boxes, labels
    return predict


def _check_report(metrics: dict) -> None:
    """evaluate's Markdown report of a nuScenes record shows its numbers: the summary over the scored and over all
    classes, and per class the AP, the AP at each distance threshold and the errors ('–' where the devkit has none)."""
    from admlops.tasks import get_task

    report = get_task("nuscenes-detection").markdown(metrics)
    assert report.startswith("# nuScenes evaluation (val split)") and "KITTI" not in report
    rows = {cells[0]: cells[1:] for line in report.splitlines() if line.startswith("| ") and not line.startswith(
        ("| class", "| classes")) for cells in [[c.strip() for c in line.strip("|").split("|")]]}
    fmt = lambda v: "–" if v is None else f"{v:.2f}"
    keys = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
    scored = metrics["overall"]["classes"]
    assert rows[f"with ground truth ({len(scored)})"] == [fmt(metrics["overall"][k]) for k in keys]
    assert rows[f"all ({len(CLASSES)})"] == [fmt(metrics["all_classes"][k]) for k in keys]
    for cls, ap in metrics["per_class"].items():
        name = cls if cls in scored else f"{cls} (no ground truth)"
        assert rows[name] == [fmt(ap[k]) for k in ("AP", "AP_dist_0.5", "AP_dist_1.0", "AP_dist_2.0", "AP_dist_4.0",
                                                     "ATE", "ASE", "AOE", "AVE", "AAE")]
    assert len(rows) == 2 + len(CLASSES)


def test_nuscenes_metric_scores_known_lidar_boxes(data_root, tmp_path):
    """Predictions equal to the ground truth score mAP 1 and NDS ~1 over the classes the split has; shifted ones lose
    the tight distance thresholds and gain translation error; wrong classes score near 0. The devkit's own means over
    all 10 classes count each absent class as AP 0 and errors 1."""
    cfg = _config(data_root)
    perfect = _nuscenes_metrics_of(cfg, _ground_truth(), tmp_path)
    scored = perfect["overall"]["classes"]
    assert set(scored) == SYNTH_CLASSES and set(perfect["per_class"]) == set(CLASSES)
    assert perfect["headline"]["mAP"] == pytest.approx(1.0, abs=1e-3) and perfect["headline"]["NDS"] > 0.99
    assert all(perfect["headline"][f"{c}_AP"] == pytest.approx(1.0, abs=1e-3) for c in scored)
    assert perfect["overall"]["mATE"] < 0.01 and perfect["overall"]["mASE"] < 0.01
    absent = [c for c in CLASSES if c not in scored]
    assert all(perfect["per_class"][c]["AP"] == 0 and perfect["per_class"][c]["ATE"] == 1 for c in absent)
    assert perfect["all_classes"]["mAP"] == pytest.approx(len(scored) / len(CLASSES), abs=1e-3)
    assert perfect["per_class"]["traffic_cone"]["AOE"] is None  # the devkit does not define a cone's orientation
    assert (tmp_path / "detections" / "pred_instances_3d" / "metrics_summary.json").is_file()

    shifted = _nuscenes_metrics_of(cfg, _ground_truth(shift=0.75), tmp_path)  # beyond 0.5 m, within 1 m
    assert all(shifted["per_class"][c]["AP_dist_0.5"] == 0 and shifted["per_class"][c]["AP_dist_1.0"] > 0.99
               for c in scored)
    assert shifted["headline"]["mAP"] == pytest.approx(0.75, abs=1e-3)
    assert shifted["overall"]["mATE"] == pytest.approx(0.75, abs=0.01)
    assert shifted["headline"]["NDS"] < perfect["headline"]["NDS"] - 0.1
    _check_report(shifted)

    all_cars = _nuscenes_metrics_of(cfg, _ground_truth(label=CLASSES.index("car")), tmp_path)
    assert 0 < all_cars["per_class"]["car"]["AP"] < 0.9  # every other object is a false positive car
    assert all(all_cars["per_class"][c]["AP"] == 0 for c in scored if c != "car")
    assert all_cars["headline"]["mAP"] < 0.2

    def nothing(ann):
        return ann["gt_bboxes_3d"][:0], ann["gt_labels_3d"][:0]

    none = _nuscenes_metrics_of(cfg, nothing, tmp_path)  # the devkit raises on no boxes at all unless compat helps
    assert none["headline"]["mAP"] == none["headline"]["NDS"] == 0 and none["overall"]["mATE"] == 1


def test_nuscenes_metric_scores_known_camera_boxes(data_root, tmp_path):
    """FCOS3D's evaluation path: per-image camera boxes, merged per sample over the six views (NMS on the CPU,
    admlops.compat) and moved to the global frame by the infos' poses. The ground truth of every image scores high;
    shifted boxes lower."""
    cfg = _config(data_root, CAMERA)
    perfect = _nuscenes_metrics_of(cfg, _ground_truth(), tmp_path)
    assert set(perfect["overall"]["classes"]) == SYNTH_CLASSES
    # measured mAP 1.0, mATE 0.16 m: a camera box is placed with its camera's ego pose (5-40 ms after the LiDAR's
    # here) and NuScenesMetric moves it to the global frame with the LiDAR's (mmdet3d's approximation), so the ego's
    # motion in between is a translation error
    assert perfect["headline"]["mAP"] > 0.95 and 0.05 < perfect["overall"]["mATE"] < 0.3, perfect["overall"]
    assert perfect["overall"]["mASE"] < 0.01 and perfect["overall"]["mAOE"] < 0.05, perfect["overall"]
    shifted = _nuscenes_metrics_of(cfg, _ground_truth(shift=0.75), tmp_path)
    assert shifted["headline"]["mAP"] < perfect["headline"]["mAP"] - 0.15
    assert shifted["overall"]["mATE"] > 0.5


def test_camera_box_conversion_runs_on_the_cpu_as_mmdet3d_defines_it(monkeypatch):
    """compat's replacement for mmdet3d's nusc_box_to_cam_box3d, whose .cuda() fails on a CPU build of torch, returns
    what the original returns where .cuda() is the identity."""
    import torch
    from mmdet3d.evaluation.metrics import nuscenes_metric
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    from admlops import compat

    compat.apply()
    assert nuscenes_metric.nusc_box_to_cam_box3d is compat.nusc_box_to_cam_box3d_cpu
    boxes = [Box([1.0 + i, 0.5, 20.0 - i], [1.9, 4.6, 1.7], Quaternion(axis=[0, 1, 0], angle=0.3 * i), label=i,
                 score=0.9 - 0.1 * i, velocity=(0.5 * i, 0.0, -1.0)) for i in range(4)]
    ours, original = compat.nusc_box_to_cam_box3d_cpu(boxes), compat.nusc_box_to_cam_box3d_cpu.replaces
    if not torch.cuda.is_available():
        with pytest.raises((AssertionError, RuntimeError), match="CUDA"):  # what the shim is for
            original(boxes)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
    theirs = original(boxes)
    torch.testing.assert_close(ours[0].tensor, theirs[0].tensor)
    torch.testing.assert_close(ours[1], theirs[1])
    torch.testing.assert_close(ours[2], theirs[2])


def test_centerpoint_trains_then_evaluates(data_root, tmp_path):
    """``admlops train --config centerpoint_pillar_nuscenes_cpu`` on the data root (multi-sweep points, GT-database
    sampling), then ``admlops evaluate`` writes the nuScenes metrics."""
    import torch

    model = tmp_path / "model"
    res = _cli("train", data_root, model, "--config", LIDAR, "--max-iters", 2, "--batch-size", 2)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = json.loads((model / "summary.json").read_text())
    assert summary["iterations"] == 2 and np.isfinite(summary["final_loss"])
    ckpt = torch.load(model / "model.pth", map_location="cpu", weights_only=True)
    assert tuple(ckpt["meta"]["dataset_meta"]["classes"]) == tuple(_config(data_root).train_dataloader.dataset
                                                                  .metainfo.classes)
    config = (model / "config.py").read_text()
    assert "NuScenesDataset" in config and "version='v1.0-mini'" in config and "LoadPointsFromMultiSweeps" in config
    assert str(data_root / "nuscenes_dbinfos_train.pkl") in config

    res = _cli("evaluate", data_root, model, tmp_path / "evaluate")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    metrics = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    assert metrics["split"] == "val" and set(metrics["per_class"]) == set(CLASSES)
    assert {"mAP", "NDS"} <= set(metrics["headline"]) and 0 <= metrics["headline"]["NDS"] <= 1
    assert set(metrics["overall"]["classes"]) == SYNTH_CLASSES
    distances = {f"AP_dist_{d}" for d in (0.5, 1.0, 2.0, 4.0)}
    assert {"AP", *distances, "ATE", "ASE", "AOE", "AVE", "AAE"} == set(metrics["per_class"]["car"])
    assert {"mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE"} == set(metrics["all_classes"])
    assert (tmp_path / "evaluate" / "work" / "detections" / "pred_instances_3d" / "results_nusc.json").is_file()


def test_fcos3d_trains_on_camera_instances_then_evaluates(data_root, tmp_path):
    """FCOS3D (no deformable convolutions) trains on the infos' camera instances and evaluate scores it with the
    nuScenes metric, detections or none."""
    from admlops.components.evaluate.evaluate import evaluate
    from admlops.components.train.train import train

    summary = train(data_root, tmp_path / "model", config=CAMERA, max_iters=2, batch_size=2)
    assert summary["iterations"] == 2 and np.isfinite(summary["final_loss"])
    assert "LoadImageFromFileMono3D" in (tmp_path / "model" / "config.py").read_text()
    metrics = evaluate(data_root, tmp_path / "model", tmp_path / "evaluate")
    assert json.loads((tmp_path / "evaluate" / "metrics.json").read_text()) == metrics
    assert set(metrics["per_class"]) == set(CLASSES) and 0 <= metrics["headline"]["mAP"] <= 1
    results = json.loads((tmp_path / "evaluate" / "work" / "detections" / "pred_instances_3d"
                          / "results_nusc.json").read_text())["results"]
    assert len(results) == len(_infos(data_root / "nuscenes_infos_val.pkl")["data_list"])  # one entry per sample


def test_configs_are_the_stock_models_cpu_sized(data_root):
    """Both are mmdet3d's stock models with the product's schedule; CenterPoint on a coarser grid, FCOS3D without
    deformable convolutions (mmcv's CPU build has none) on smaller images."""
    from mmengine.config import Config

    stock = Config.fromfile(_stock_centerpoint())
    lidar, camera = _config(data_root), _config(data_root, CAMERA)
    assert lidar.model.pts_bbox_head.tasks == stock.model.pts_bbox_head.tasks
    assert lidar.model.pts_bbox_head.common_heads == stock.model.pts_bbox_head.common_heads
    grid = np.subtract(lidar.point_cloud_range[3:5], lidar.point_cloud_range[:2]) / lidar.voxel_size[:2]
    assert list(grid) == list(lidar.model.pts_middle_encoder.output_shape) == lidar.model.train_cfg.pts.grid_size[:2]
    head = lidar.model.pts_bbox_head
    assert head.bbox_coder.voxel_size == lidar.model.test_cfg.pts.voxel_size == lidar.voxel_size[:2]
    sweeps = next(t for t in lidar.train_dataloader.dataset.pipeline if t.type == "LoadPointsFromMultiSweeps")
    assert sweeps.sweeps_num == 9
    assert camera.model.backbone.dcn is None and not any(camera.model.backbone.stage_with_dcn)
    assert camera.model.bbox_head.dcn_on_last_conv is False
    for cfg in (lidar, camera):
        assert cfg.train_cfg.type == "IterBasedTrainLoop" and cfg.param_scheduler[-1].end == cfg.train_cfg.max_iters
        assert cfg.test_evaluator.type == "NuScenesMetric" and cfg.test_evaluator.data_root == str(data_root)
        assert cfg.test_dataloader.dataset.metainfo.version == "v1.0-mini"


def test_infos_for_other_classes_fail_naming_the_file(data_root, tmp_path):
    root = _copy(data_root, tmp_path)
    infos = root / "nuscenes_infos_train.pkl"
    _rewrite_infos(infos, lambda i: i["metainfo"].update(categories={"vehicle": 0, "person": 1}))
    res = _cli("train", root, tmp_path / "model", "--config", LIDAR, "--max-iters", 1)
    assert res.returncode == 3, res.stderr[-3000:]
    assert str(infos) in res.stderr and "car" in res.stderr and "Traceback" not in res.stderr

    _rewrite_infos(infos, lambda i: i["metainfo"].update(categories={c: (k + 1) % 10 for k, c in enumerate(CLASSES)}))
    with pytest.raises(InputError, match="differ from NuScenesDataset's order") as err:
        _config(root)
    assert err.value.path == str(infos)


def test_missing_sweep_and_image_fail_naming_the_file(data_root, tmp_path):
    root = _copy(data_root, tmp_path, follow_links=True)
    info = next(i for i in _infos(root / "nuscenes_infos_val.pkl")["data_list"] if i.get("lidar_sweeps"))
    sweep = root / "sweeps" / "LIDAR_TOP" / Path(info["lidar_sweeps"][0]["lidar_points"]["lidar_path"]).name
    sweep.unlink()
    with pytest.raises(InputError, match="missing LiDAR sweep") as err:
        _config(root)
    assert err.value.path == str(sweep)
    _config(root, CAMERA)  # the camera model loads no sweeps

    image = root / "samples" / "CAM_BACK" / info["images"]["CAM_BACK"]["img_path"]
    image.unlink()
    with pytest.raises(InputError, match="missing CAM_BACK image") as err:
        _config(root, CAMERA)
    assert err.value.path == str(image)


def test_config_and_data_root_kinds_must_match(data_root, tmp_path):
    with pytest.raises(InputError, match="mmdet3d nuScenes data root, but the config reads KittiDataset") as err:
        _config(data_root, "pointpillars_kitti_cpu")
    assert err.value.path == str(data_root)
    with pytest.raises(InputError, match="mmdet3d nuScenes data root, but the config reads CocoDataset"):
        _config(data_root, "rtmdet_tiny_kitti")
    with pytest.raises(InputError, match="missing: the config reads an mmdet3d nuScenes data root") as err:
        _config(tmp_path, LIDAR)
    assert err.value.path == str(tmp_path.resolve() / "nuscenes_infos_train.pkl")


def test_what_the_metric_needs_is_checked(data_root, tmp_path):
    """NuScenesMetric finds samples by position and reopens the devkit tables; a split other than the devkit's val
    cannot be scored; stock CenterPoint's class-balanced sampling needs every class in the train split."""
    with pytest.raises(UsageError, match="val split only"):
        _config(data_root, eval_split="train")
    with pytest.raises(InputError, match="objects in the train split: the config's CBGSDataset") as err:
        _config(data_root, _stock_centerpoint())
    assert err.value.path == str(data_root / "nuscenes_infos_train.pkl")
    assert all(c in err.value.message.split(" objects")[0] for c in set(CLASSES) - SYNTH_CLASSES)

    root = _copy(data_root, tmp_path)
    infos = root / "nuscenes_infos_val.pkl"
    _rewrite_infos(infos, lambda i: i["data_list"][1].update(sample_idx=7))
    with pytest.raises(InputError, match=r"data_list\[1\] has sample_idx 7") as err:
        _config(root)
    assert err.value.path == str(infos)
    _rewrite_infos(infos, lambda i: i["data_list"][1].update(sample_idx=1))
    (root / "v1.0-mini").unlink()
    with pytest.raises(InputError, match="missing: the nuScenes v1.0-mini tables") as err:
        _config(root)
    assert err.value.path == str(root / "v1.0-mini")
