"""The task registry (admlops.tasks): every model config the product ships is recognised as exactly one task, the
steps ask it instead of branching on 2D/3D, and the shared library does not depend on the steps."""
import ast
import re
from pathlib import Path

import pytest
from mmengine.config import Config

from admlops.configs import resolve, shipped
from admlops.errors import UsageError
from admlops.tasks import TASKS, get_task, task_of

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {"rtmdet_tiny_kitti": "image-detection", "rtmdet_tiny_kitti_lowlight": "image-detection",
            "rtmdet_s_kitti": "image-detection", "yolox_tiny_kitti": "image-detection", "yolox_s_kitti": "image-detection",
            "faster_rcnn_r50_fpn_kitti_cpu": "image-detection", "faster_rcnn_r50_fpn_kitti": "image-detection", "yolov3_mobilenetv2_kitti": "image-detection",
            "pointpillars_kitti": "voxel-detection", "pointpillars_kitti_cpu": "voxel-detection",
            "centerpoint_pillar_nuscenes_cpu": "nuscenes-detection", "fcos3d_nuscenes_cpu": "nuscenes-detection"}


def test_every_shipped_model_config_is_one_task():
    assert shipped("models") == sorted(EXPECTED)
    for name, expected in EXPECTED.items():
        cfg = Config.fromfile(str(resolve("models", name)))
        assert [t for t in TASKS if get_task(t).recognises(cfg)] == [expected], name
        assert task_of(cfg).name == expected


def test_unknown_task_and_unrecognised_config_are_usage_errors():
    with pytest.raises(UsageError, match="unknown task 'lane-detection': expected one of image-detection"):
        get_task("lane-detection")
    cfg = Config.fromfile(str(resolve("models", "rtmdet_tiny_kitti")))
    cfg.test_dataloader.dataset.type = "CityscapesDataset"
    with pytest.raises(UsageError, match="no task takes a model that tests on CityscapesDataset"):
        task_of(cfg)


def test_export_is_refused_for_a_task_without_a_deploy_config():
    with pytest.raises(UsageError, match="export of a 3D detector on nuScenes .* is not supported: export takes 2D"):
        get_task("nuscenes-detection").check_exportable()
    get_task("voxel-detection").check_exportable()  # the control: exportable kinds pass


def test_the_tasks_export_summary_names_the_gated_metric_and_onnx_runtimes_difference():
    task = get_task("voxel-detection")
    rec = lambda ap: {"headline": {"mAP_3D_AP40_moderate": ap}}  # noqa: E731
    out = task.export_summary({"onnxruntime-fp32": rec(40.5), "onnxruntime-int8": rec(39.0)}, rec(41.0))
    assert out["task"] == "voxel-detection" and out["gated_metric"] == "mAP_3D_AP40_moderate"
    assert out["difference"] == pytest.approx(-0.5) and out["onnxruntime"] == rec(40.5)
    assert "difference" not in task.export_summary({"onnxruntime-int8": rec(39.0)}, rec(41.0))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_the_shared_library_imports_no_step():
    """admlops/ is what every step imports: none of its modules imports components (admlops.components)."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "admlops").rglob("*.py")
                 if any(m.startswith("admlops.components") for m in _imports(p))]
    assert offenders == []


def test_no_step_or_pipeline_branches_on_the_model_kind():
    """Outside admlops/tasks, no code under components/ or pipelines/ names the voxel kind, a 3D task's metric
    layout or mmdeploy's task names (comments, docstrings, --help texts and a pipeline parameter's default deploy
    config aside: words and names, not branches)."""
    kind = re.compile(r"voxel|VoxelDetection|ObjectDetection|headline|KittiDataset|CocoDataset", re.I)
    found = []
    for path in [*(ROOT / "components").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
                and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        docs |= {id(k.value) for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "help" for k in [n]}
        docs |= {id(d) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for d in n.args.defaults}
        found += [f"{path.relative_to(ROOT)}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
                  and kind.search(n.value)]
        found += [f"{path.relative_to(ROOT)}:{n.lineno}: {n.id}" for n in ast.walk(tree)
                  if isinstance(n, ast.Name) and kind.search(n.id)]
    assert found == []


def test_the_run_summary_lines_of_an_export_keep_each_tasks_format():
    kitti = lambda ap: {"headline": {"mAP_3D_AP40_moderate": ap}}  # noqa: E731
    assert get_task("voxel-detection").export_line("onnxruntime-fp32", kitti(40.5), kitti(41.0)) == (
        "onnxruntime-fp32   mAP_3D_AP40_moderate 40.50  (PyTorch 41.00, difference -0.50 points)")
    coco = lambda m: {"bbox": {"bbox_mAP_50": m, "bbox_mAP": m / 2}}  # noqa: E731
    assert get_task("image-detection").export_line("openvino-int8", coco(0.79), coco(0.8)) == (
        "openvino-int8      mAP@0.5 0.790  mAP 0.395  (difference -0.0100)")
