"""3D detection through the product's one command set: PointPillars (configs/models/pointpillars_kitti_cpu.py) on
an mmdet3d KITTI data root written by ``admlops data infos``, trained by the train step and evaluated with
mmdet3d's KittiMetric; the metric on known boxes; the ground plane; bad input named by file."""
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from admlops.errors import InputError

CLASSES = ("Pedestrian", "Cyclist", "Car")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """48 synthetic frames, every second one val: enough moderate Cars in val (>= 40) for KITTI's 40 recall
    points; with fewer ground-truth objects than recall points even perfect predictions stay below AP 100."""
    from admlops.components.infos.kitti import write_kitti_infos
    from admlops.components.synth.kitti import synth_kitti

    tmp = tmp_path_factory.mktemp("det3d")
    kitti = synth_kitti(tmp / "kitti", frames=48, seed=11, val_fraction=0.5, workers=2)
    write_kitti_infos(kitti, tmp / "root", workers=2)
    return tmp / "root"


def _config(data_root, name="pointpillars_kitti_cpu"):
    from mmengine.config import Config

    from admlops import compat
    from admlops.configs import resolve
    from admlops.mmconfig import use_dataset

    compat.apply()
    cfg = Config.fromfile(str(resolve("models", name)))
    use_dataset(cfg, data_root)
    return cfg


def _infos(path: Path) -> dict:
    return pickle.loads(path.read_bytes())


def _rewrite_infos(path: Path, change) -> None:
    infos = _infos(path)
    change(infos)
    path.write_bytes(pickle.dumps(infos))


def _copy(data_root: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "root"
    shutil.copytree(data_root, dest, symlinks=True)  # sources stay linked, infos/scans/GT database are copies
    return dest


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "admlops.pipelines.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=1800)


def _kitti_metrics_of(cfg, predict) -> dict:
    """KittiMetric, built from the config as the test loop builds it, over the val split with ``predict(ann)``'s
    LiDAR boxes per frame (``ann``: the dataset's evaluation annotations), through mmengine's Evaluator."""
    import torch
    from mmdet3d.registry import DATASETS
    from mmdet3d.structures import Det3DDataSample
    from mmdet3d.utils import register_all_modules
    from mmengine.evaluator import Evaluator
    from mmengine.structures import InstanceData

    from admlops.tasks.voxel_detection import kitti_metrics

    register_all_modules()
    dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, pipeline=[]))
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    for i in range(len(dataset)):
        ann = dataset.get_data_info(i)["eval_ann_info"]
        boxes, labels = predict(ann)
        sample = Det3DDataSample(metainfo=dict(sample_idx=i))
        sample.pred_instances_3d = InstanceData(bboxes_3d=boxes, labels_3d=torch.as_tensor(labels),
                                                scores_3d=torch.linspace(1.0, 0.5, len(labels)))
        sample.pred_instances = InstanceData()
        evaluator.process([sample])
    return kitti_metrics(evaluator.evaluate(len(dataset)))


def _ground_truth_shifted_by(metres: float):
    def predict(ann):
        boxes = ann["gt_bboxes_3d"].clone()
        boxes.tensor[:, 0] += metres  # along the LiDAR's x axis, away from the car
        return boxes, ann["gt_labels_3d"]
    return predict


def test_kitti_metric_on_our_infos_scores_known_boxes(data_root):
    """Predictions equal to the ground truth score AP 100 at KITTI's thresholds; shifted ones lower; far-off ones
    0. Our infos carry DontCare regions (label -1, named through metainfo.categories) and the metric takes them."""
    cfg = _config(data_root)
    val = _infos(data_root / "kitti_infos_val.pkl")
    assert val["metainfo"]["categories"]["DontCare"] == -1
    instances = [inst for info in val["data_list"] for inst in info["instances"]]
    assert any(inst["bbox_label"] == -1 for inst in instances)  # DontCare regions are in the evaluation
    moderate_cars = [i for i in instances if i["bbox_label"] == 2 and i["difficulty"] in (0, 1)]
    assert len(moderate_cars) >= 40, "the fixture needs more val Cars for AP40 to reach 100"

    perfect = _kitti_metrics_of(cfg, _ground_truth_shifted_by(0.0))
    for kind in ("3D", "BEV", "2D"):
        assert perfect["headline"][f"Car_{kind}_AP40_moderate"] == pytest.approx(100.0, abs=1e-3), perfect["headline"]
    assert set(perfect["per_class"]) == set(CLASSES)
    assert len(perfect["per_class"]["Car"]) == 36  # {3D, BEV, 2D} x {AP11, AP40} x 3 difficulties x {strict, loose}
    strict = [perfect["per_class"][c]["3D_AP40_moderate_strict"] for c in CLASSES]
    assert perfect["overall"]["3D_AP40_moderate"] == pytest.approx(np.mean(strict), abs=1e-3)  # the class mean

    shifted = _kitti_metrics_of(cfg, _ground_truth_shifted_by(0.5))["headline"]  # measured: ~49 (IoU 0.7 needed)
    assert 0 < shifted["Car_3D_AP40_moderate"] < 90 and shifted["Car_BEV_AP40_moderate"] < 90
    far = _kitti_metrics_of(cfg, _ground_truth_shifted_by(20.0))["headline"]
    assert far["Car_3D_AP40_moderate"] == far["Car_BEV_AP40_moderate"] == far["Car_2D_AP40_moderate"] == 0.0


def test_train_then_evaluate_a_few_iterations(data_root, tmp_path):
    """The train step's own function trains PointPillars (with --cfg-options' dict), the ``admlops evaluate``
    command writes KITTI metrics."""
    import torch

    from admlops.components.train.train import train_uri

    model = tmp_path / "model"
    summary = train_uri(str(data_root), str(model), config="pointpillars_kitti_cpu", max_iters=2, batch_size=2,
                        cfg_options={"model.test_cfg.score_thr": 0.05, "default_hooks.logger.interval": 1})
    assert summary["iterations"] == 2 and np.isfinite(summary["final_loss"])
    ckpt = torch.load(model / "model.pth", map_location="cpu", weights_only=True)
    assert ckpt["meta"]["dataset_meta"]["classes"] == CLASSES
    config = (model / "config.py").read_text()
    assert "KittiDataset" in config and "score_thr=0.05" in config and "use_ground_plane=False" in config
    assert str(data_root / "kitti_dbinfos_train.pkl") in config  # the GT database of the data root it trained on

    res = _cli("evaluate", data_root, model, tmp_path / "evaluate")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    metrics = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    assert metrics["split"] == "val" and set(metrics["per_class"]) == set(CLASSES)
    assert 0.0 <= metrics["headline"]["Car_3D_AP40_moderate"] <= 100.0
    assert {"3D_AP11_easy_strict", "BEV_AP40_hard_loose", "2D_AP40_moderate_strict"} <= set(metrics["per_class"]["Car"])

    # --cfg-options override the trained config for this evaluation only: one box per scan at most
    res = _cli("evaluate", data_root, model, tmp_path / "top1", "--cfg-options", "model.test_cfg.score_thr=0.0",
               "model.test_cfg.max_num=1")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    detections = pickle.loads((tmp_path / "top1" / "work" / "detections" / "pred_instances_3d.pkl").read_bytes())
    counts = [len(d["score"]) for d in detections]
    assert len(counts) == len(_infos(data_root / "kitti_infos_val.pkl")["data_list"]) and max(counts) == 1, counts
    assert "max_num=50" in config  # the model's own setting is untouched
    res = _cli("evaluate", data_root, model, tmp_path / "bad", "--cfg-options", "model.test_cfg.max_nums=1")
    assert res.returncode == 2 and "model.test_cfg has no 'max_nums'" in res.stderr and not (tmp_path / "bad").exists()


def test_ground_plane_is_used_when_every_train_frame_has_one(data_root, tmp_path):
    """Stock PointPillars samples GT objects onto KITTI's ground planes (training/planes, a separate download);
    ours does when the infos carry them and otherwise does not, where the stock setting fails."""
    from mmdet3d.registry import DATASETS

    def sampler(cfg):
        return next(t for t in cfg.train_dataloader.dataset.dataset.pipeline if t["type"] == "ObjectSample")

    cfg = _config(data_root)
    assert sampler(cfg)["use_ground_plane"] is False
    sampler(cfg)["use_ground_plane"] = True  # the stock setting, on infos without planes
    with pytest.raises(AssertionError, match="plane is None"):
        DATASETS.build(cfg.train_dataloader.dataset)[0]

    root = _copy(data_root, tmp_path)
    _rewrite_infos(root / "kitti_infos_train.pkl", lambda infos: [info.update(plane=[0.0, -1.0, 0.0, 1.65])
                                                                  for info in infos["data_list"]])
    cfg = _config(root)
    assert sampler(cfg)["use_ground_plane"] is True
    sample = DATASETS.build(cfg.train_dataloader.dataset)[0]
    assert len(sample["data_samples"].gt_instances_3d) > 0


def test_infos_for_other_classes_fail_naming_the_file(data_root, tmp_path):
    root = _copy(data_root, tmp_path)
    infos = root / "kitti_infos_train.pkl"
    _rewrite_infos(infos, lambda i: i["metainfo"].update(categories={"vehicle": 0, "person": 1, "DontCare": -1}))
    res = _cli("train", root, tmp_path / "model", "--config", "pointpillars_kitti_cpu", "--max-iters", 1)
    assert res.returncode == 3, res.stderr[-3000:]
    assert str(infos) in res.stderr and "Car" in res.stderr and "Traceback" not in res.stderr

    _rewrite_infos(infos, lambda i: i["metainfo"].update(categories={"Car": 0, "Pedestrian": 2, "Cyclist": 1}))
    with pytest.raises(InputError, match="differ from KittiDataset's order") as err:
        _config(root)
    assert err.value.path == str(infos)


def test_infos_without_dontcare_category_fail_naming_the_file(data_root, tmp_path):
    root = _copy(data_root, tmp_path)
    infos = root / "kitti_infos_val.pkl"
    _rewrite_infos(infos, lambda i: i["metainfo"]["categories"].pop("DontCare"))
    with pytest.raises(InputError, match="DontCare") as err:
        _config(root)
    assert err.value.path == str(infos)


def test_data_root_without_gt_database_fails_naming_the_file(data_root, tmp_path):
    root = _copy(data_root, tmp_path)
    entry = _infos(root / "kitti_dbinfos_train.pkl")["Car"][0]
    (root / entry["path"]).unlink()
    with pytest.raises(InputError, match="missing GT-database object") as err:
        _config(root)
    assert err.value.path == str(root / entry["path"])
    (root / "kitti_dbinfos_train.pkl").unlink()
    with pytest.raises(InputError, match="missing GT-database infos") as err:
        _config(root)
    assert err.value.path == str(root / "kitti_dbinfos_train.pkl")


def test_scan_of_the_wrong_size_fails_naming_the_file(data_root, tmp_path):
    root = _copy(data_root, tmp_path)
    scan = sorted((root / "training" / "velodyne_reduced").glob("*.bin"))[1]
    scan.write_bytes(scan.read_bytes()[:-3])
    with pytest.raises(InputError, match="not a whole number of points") as err:
        _config(root)
    assert err.value.path == str(scan)


def test_config_and_dataset_kinds_must_match(data_root, tmp_path):
    with pytest.raises(InputError, match="mmdet3d KITTI data root, but the config reads CocoDataset"):
        _config(data_root, "rtmdet_tiny_kitti")
    with pytest.raises(InputError, match="missing: the config reads an mmdet3d KITTI data root") as err:
        _config(tmp_path, "pointpillars_kitti")
    assert err.value.path == str(tmp_path.resolve() / "kitti_infos_train.pkl")


def test_unknown_config_name_is_a_usage_error(data_root, tmp_path):
    res = _cli("train", data_root, tmp_path / "model", "--config", "pointpilars_kitti")
    assert res.returncode == 2 and "pointpillars_kitti_cpu" in res.stderr and "Traceback" not in res.stderr


def test_cpu_config_is_the_full_size_model_on_a_smaller_grid(data_root):
    """Both configs are mmdet3d's stock PointPillars with the product's schedule and sampler; the full-size one keeps
    the stock range and 0.16 m grid, the CPU one changes range, grid, points per pillar and BatchNorm momentum."""
    import mmdet3d
    from mmengine.config import Config

    configs = Path(mmdet3d.__file__).parent / ".mim" / "configs"
    stock = Config.fromfile(str(configs / "pointpillars" / "pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class.py"))
    full, cpu = _config(data_root, "pointpillars_kitti"), _config(data_root, "pointpillars_kitti_cpu")
    assert full.model.voxel_encoder == stock.model.voxel_encoder
    assert full.model.middle_encoder.output_shape == [496, 432]
    assert cpu.model.middle_encoder.output_shape == [200, 160]
    assert cpu.model.data_preprocessor.voxel_layer.voxel_size == [0.32, 0.32, 4]
    assert cpu.model.backbone.norm_cfg.momentum == cpu.model.voxel_encoder.norm_cfg.momentum == 0.1
    for cfg in (full, cpu):
        assert dict(cfg.model.backbone, norm_cfg=None) == dict(stock.model.backbone, norm_cfg=None)
        assert cfg.model.bbox_head.type == "Anchor3DHead"
        assert cfg.train_cfg.type == "IterBasedTrainLoop" and cfg.param_scheduler[-1].end == cfg.train_cfg.max_iters
        pipeline = cfg.train_dataloader.dataset.dataset.pipeline
        assert next(t for t in pipeline if t.type == "ObjectSample").use_ground_plane is False
        ranges = [t.point_cloud_range for t in pipeline if t.type.endswith("RangeFilter")]
        assert ranges == [cfg.model.voxel_encoder.point_cloud_range] * 2


def test_pointpillars_2d_part_prunes_and_a_fresh_process_rebuilds_it(data_root, tmp_path):
    """PointPillars' backbone and neck lose channels on the bird's-eye-view pseudo-image; the pillar encoder and the
    head's class, box and direction outputs stay whole; the config carries the pruned shapes (tests/test_prune.py's
    round trip through a fresh process, with its control)."""
    import torch
    from mmengine.registry import MODELS, init_default_scope

    from admlops.components.prune.prune import prune_model
    from tests.test_prune import check_round_trip

    cfg = _config(data_root)
    cfg.pruning.importance = "l2"  # no gradients needed for what this test checks
    init_default_scope("mmdet3d")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    fresh = MODELS.build(cfg.model)
    cfg.dump(str(tmp_path / "parent.py"))
    record = prune_model(model, cfg, data_root, 0.3, "pointpillars_kitti_cpu.py")
    assert record["macs"][1] <= 0.7 * record["macs"][0]
    head = model.bbox_head
    assert [head.conv_cls.out_channels, head.conv_reg.out_channels, head.conv_dir_cls.out_channels] == \
        [fresh.bbox_head.conv_cls.out_channels, fresh.bbox_head.conv_reg.out_channels, fresh.bbox_head.conv_dir_cls.out_channels]
    assert model.backbone.blocks[0][0].out_channels < fresh.backbone.blocks[0][0].out_channels
    assert model.voxel_encoder.pfn_layers[0].linear.out_features == fresh.voxel_encoder.pfn_layers[0].linear.out_features
    check_round_trip(model, cfg, record, data_root, tmp_path, tmp_path / "parent.py")
