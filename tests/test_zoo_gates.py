"""Deploy gates in the zoo: recorded with the version, `candidate` for the targets that passed (a failed target is
blocked, no alias when none passed), promotion refused when one failed unless forced with a reason (who, when and
why kept)."""
import json

import pytest

from admlops import catalog, zoo
from admlops.objectstore import open_store
from admlops.pipelines.cli import main


def _gates(passed: bool, fp32_passed: bool = True) -> dict:
    gate = {"backend": "openvino", "precision": "int8", "pytorch": 0.9, "measured": 0.9 if passed else 0.85,
            "drop_points": 0.0 if passed else 5.0, "allowed_points": 1.5, "passed": passed}
    fp32 = {"backend": "onnxruntime", "precision": "fp32", "pytorch": 0.9, "measured": 0.9 if fp32_passed else 0.8,
            "drop_points": 0.0 if fp32_passed else 10.0, "allowed_points": 0.5, "passed": fp32_passed}
    return {"metric": "bbox_mAP_50", "passed": passed and fp32_passed, "gates": [fp32, gate]}


def _steps(tmp_path, passed: bool, fp32_passed: bool = True):
    """What train, evaluate, export (with gates.json) and benchmark leave for register."""
    model, ev, onnx, bench = (tmp_path / n for n in ("model", "eval", "onnx", "bench"))
    for d, files in ((model, ["model.pth", "config.py", "train_log.json"]), (ev, ["metrics.json"]),
                     (onnx, ["metrics.json", "end2end.onnx", "deploy.py"]), (bench, ["benchmark.json"])):
        d.mkdir()
        for f in files:
            (d / f).write_text("{}" if f.endswith(".json") else f"# {f}\n")
    (onnx / "gates.json").write_text(json.dumps(_gates(passed, fp32_passed)))
    return model, ev, onnx, bench


@pytest.mark.parametrize("passed", [True, False])
def test_register_aliases_the_targets_that_passed(tmp_path, passed, capsys):
    """Every gate passed: candidate covers both targets. int8 failed: candidate covers ONNX Runtime fp32 only and
    names openvino int8 as blocked (the model still reaches the zoo)."""
    from admlops.components.register.register import register

    store_dir = tmp_path / "store"
    dataset = {"name": "kitti-coco", "version": "v1", "manifest_sha256": "0" * 64}
    result = register(*_steps(tmp_path, passed), dataset, "det", run_id="run-1", store_uri=str(store_dir))
    store = open_store(store_dir)
    info = catalog.show(store, "models", "det", result["version"]).info
    assert info["gates"] == _gates(passed) and info["lineage"]["pipeline_run_id"] == "run-1"
    assert "metrics/gates.json" in {r["path"] for r in catalog.read_manifest(store, "models", "det", result["version"])}
    assert result["gates_passed"] is passed
    alias = zoo.aliases(store, "det")["candidate"]
    assert alias["version"] == result["version"] and result["alias"] == alias
    assert alias["targets"] == (["onnxruntime:fp32", "openvino:int8"] if passed else ["onnxruntime:fp32"])
    blocked = [] if passed else ["openvino int8 (drop 5.00 > 1.50 points)"]
    assert alias["blocked_targets"] == result["failed_gates"] == blocked
    err = capsys.readouterr().err
    assert ("candidate blocked for the targets whose gates failed: openvino int8" in err) is not passed


def test_the_tensorrt_engines_gates_join_the_record_and_a_failed_engine_is_blocked(tmp_path):
    """export-trt's gates.json (the GPU profile's engines) is recorded beside export's: a failed int8 engine is
    blocked from candidate while every export target and the fp16 engine keep it; the record passes only if both do."""
    from admlops.components.register.register import register

    steps = _steps(tmp_path, True)
    engines = tmp_path / "engines"
    engines.mkdir()
    trt = [{"backend": "tensorrt", "precision": p, "pytorch": 0.9, "measured": m, "drop_points": d,
            "allowed_points": a, "passed": d <= a} for p, m, d, a in (("fp16", 0.9, 0.0, 0.5), ("int8", 0.86, 4.0, 1.5))]
    (engines / "gates.json").write_text(json.dumps({"metric": "bbox_mAP_50", "passed": False, "gates": trt}))
    dataset = {"name": "kitti-coco", "version": "v1", "manifest_sha256": "0" * 64}
    result = register(*steps, dataset, "det", store_uri=str(tmp_path / "store"), engines_dir=engines)
    info = catalog.show(open_store(tmp_path / "store"), "models", "det", result["version"]).info
    assert info["gates"]["passed"] is False and info["gates"]["gates"] == _gates(True)["gates"] + trt
    assert result["failed_gates"] == ["tensorrt int8 (drop 4.00 > 1.50 points)"]
    assert result["alias"]["targets"] == ["onnxruntime:fp32", "openvino:int8", "tensorrt:fp16"]
    control = register(*steps, dataset, "det", store_uri=str(tmp_path / "store2"))  # without the engines
    assert control["gates_passed"] and "tensorrt:fp16" not in control["alias"]["targets"]


def test_register_does_not_alias_a_model_whose_every_target_failed(tmp_path, capsys):
    from admlops.components.register.register import register

    store_dir = tmp_path / "store"
    dataset = {"name": "kitti-coco", "version": "v1", "manifest_sha256": "0" * 64}
    result = register(*_steps(tmp_path, False, fp32_passed=False), dataset, "det", store_uri=str(store_dir))
    assert result["alias"] is None and result["deployable_targets"] == []
    assert "candidate" not in zoo.aliases(open_store(store_dir), "det")
    assert "not aliased candidate: onnxruntime fp32 (drop 10.00 > 0.50 points)" in capsys.readouterr().err
    assert catalog.show(open_store(store_dir), "models", "det", result["version"]).info["gates"]  # but registered


def test_register_aliases_a_model_without_an_export(tmp_path):
    from admlops.components.register.register import register

    model, ev, _, _ = _steps(tmp_path, True)
    store_dir = tmp_path / "store"
    dataset = {"name": "kitti-coco", "version": "v1", "manifest_sha256": "0" * 64}
    result = register(model, ev, None, None, dataset, "det", store_uri=str(store_dir))
    alias = zoo.aliases(open_store(store_dir), "det")["candidate"]
    assert result["gates_passed"] and "targets" not in alias and alias["version"] == result["version"]


def test_promote_refuses_failed_gates_unless_forced_with_a_reason(tmp_path, capsys):
    from admlops.components.register.register import register

    store_dir = str(tmp_path / "store")
    dataset = {"name": "kitti-coco", "version": "v1", "manifest_sha256": "0" * 64}
    version = register(*_steps(tmp_path, False), dataset, "det", store_uri=store_dir)["version"]
    assert main(["zoo", "promote", "det", version, "production", "--store", store_dir]) == 4
    err = capsys.readouterr().err
    assert "openvino int8 (drop 5.00 > 1.50 points)" in err and "--force" in err
    assert "production" not in zoo.aliases(open_store(store_dir), "det")
    assert main(["zoo", "promote", "det", version, "production", "--store", store_dir, "--force"]) == 2
    assert "--reason" in capsys.readouterr().err
    assert main(["zoo", "promote", "det", version, "production", "--store", store_dir, "--force",
                 "--reason", "int8 not shipped"]) == 0
    record = zoo.aliases(open_store(store_dir), "det")["production"]
    assert record["forced"] and record["reason"] == "int8 not shipped" and record["by"]
    assert record["failed_gates"] == ["openvino int8 (drop 5.00 > 1.50 points)"]
    assert zoo.history(open_store(store_dir), "det")[-1]["forced"]


def test_gates_below_the_floor_are_not_meaningful_and_block_the_alias(tmp_path, capsys):
    """PyTorch at mAP@0.5 0.0 (a model that detects nothing) matches every backend: the gates passed, but the floor
    was not met, so the version is registered without an alias and promotion names the floor."""
    from admlops.backends.parity import allowances, below_floor, gate, gates_report
    from admlops.tasks.image_detection import COCO_MAP50
    from admlops.components.register.register import register

    nothing = {"bbox": {"bbox_mAP_50": 0.0}}
    report = gates_report([gate("onnxruntime", "fp32", nothing, nothing, allowances(), COCO_MAP50)])
    assert all(g["passed"] for g in report["gates"]) and report["passed"] is False
    assert report["floor"] == {"label": "mAP@0.5", "value": 0.05, "pytorch": 0.0, "met": False}
    assert below_floor(report).startswith("PyTorch mAP@0.5 0.0000 is below the floor 0.0500")
    learned = {"bbox": {"bbox_mAP_50": 0.3}}
    assert gates_report([gate("onnxruntime", "fp32", learned, learned, allowances(), COCO_MAP50)])["passed"]  # the control

    steps = _steps(tmp_path, True)
    (steps[2] / "gates.json").write_text(json.dumps(report))
    store_dir = str(tmp_path / "store")
    dataset = {"name": "kitti-coco", "version": "v1", "manifest_sha256": "0" * 64}
    result = register(*steps, dataset, "det", store_uri=store_dir)
    assert result["alias"] is None and result["deployable_targets"] == [] and not result["gates_passed"]
    assert "not aliased candidate: PyTorch mAP@0.5 0.0000 is below the floor" in capsys.readouterr().err
    assert main(["zoo", "promote", "det", result["version"], "production", "--store", store_dir]) == 4
    assert "below the floor 0.0500" in capsys.readouterr().err
