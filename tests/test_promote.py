"""Gated promotion: accuracy against production on one dataset, deploy parity, latency budgets; the alias moves
only when all pass, and a blocked promotion says which gate failed by how much."""
import json
import shutil

import pytest
import torch

from admlops import zoo
from admlops.components.promote.promote import accuracy_gate, latency_gate, parity_gate, parse_budgets
from admlops.errors import UsageError
from admlops.objectstore import open_store
from admlops.pipelines.cli import main


def _metrics(**ap50):
    return {"task": "image-detection", "bbox": {}, "per_class": {k: {"AP": v / 2, "AP50": v} for k, v in ap50.items()}}


def _kitti(**ap40):
    """A KITTI record (voxel-detection): per class 3D AP40 moderate at the strict IoU, in percent."""
    return {"task": "voxel-detection", "headline": {},
            "per_class": {k: {"3D_AP40_moderate_strict": v, "BEV_AP40_moderate_strict": 90.0} for k, v in ap40.items()}}


def test_accuracy_gate_tolerance_and_its_control():
    prod = _metrics(Car=0.90, Pedestrian=0.80)
    within = accuracy_gate(_metrics(Car=0.895, Pedestrian=0.81), prod, tolerance=1.0)
    assert within["passed"] and within["classes"]["Car"]["drop_points"] == pytest.approx(0.5)
    over = accuracy_gate(_metrics(Car=0.88, Pedestrian=0.81), prod, tolerance=1.0)  # 2 points: over the tolerance
    assert not over["passed"] and "Car AP@0.5 dropped 2.00 points (allowed 1.00)" in over["detail"]
    assert accuracy_gate(_metrics(Car=0.1), None, 1.0)["passed"]  # nothing to regress from


def test_accuracy_gate_of_a_3d_model_compares_its_tasks_per_class_number():
    """A voxel detector's records: the gate compares 3D AP40 moderate per class (percent: a point is a unit)."""
    prod = _kitti(Car=60.0, Cyclist=30.0)
    within = accuracy_gate(_kitti(Car=59.5, Cyclist=31.0), prod, tolerance=1.0)
    assert within["passed"] and within["classes"]["Car"]["drop_points"] == pytest.approx(0.5)
    over = accuracy_gate(_kitti(Car=60.0, Cyclist=27.5), prod, tolerance=1.0)
    assert not over["passed"] and over["detail"] == "Cyclist 3D AP40 moderate dropped 2.50 points (allowed 1.00)"


def test_parity_and_latency_gates():
    ok = {"gates": {"passed": True, "gates": [{"backend": "onnxruntime", "precision": "fp32", "drop_points": 0.1,
                                               "allowed_points": 0.5, "passed": True}]}}
    assert parity_gate(ok)["passed"] and not parity_gate({})["passed"]
    bad = {"gates": {"passed": False, "gates": [{"backend": "openvino", "precision": "int8", "drop_points": 3.0,
                                                 "allowed_points": 1.5, "passed": False}]}}
    assert "openvino int8 (drop 3.00 > 1.50 points)" in parity_gate(bad)["detail"]
    bench = {"rows": [{"runtime": "onnxruntime", "precision": "fp32", "batch": 1, "threads": 0, "latency": {"p50_ms": 30.0}},
                      {"runtime": "onnxruntime", "precision": "fp32", "batch": 4, "threads": 0, "latency": {"p50_ms": 90.0}}]}
    assert latency_gate(bench, parse_budgets("onnxruntime:fp32=35"))["passed"]
    over = latency_gate(bench, parse_budgets("onnxruntime:fp32=20"))
    assert not over["passed"] and "over its budget 20.0 ms by 10.0 ms" in over["detail"]
    assert "not benchmarked" in latency_gate(bench, parse_budgets("openvino:int8=10"))["detail"]
    with pytest.raises(UsageError, match="BACKEND:PRECISION=MILLISECONDS"):
        parse_budgets("onnxruntime=10")


def _publish(store, model_dir, passed=True) -> str:
    gates = {"passed": passed, "gates": [{"backend": "onnxruntime", "precision": "fp32", "drop_points": 0.0,
                                          "allowed_points": 0.5, "passed": passed}]}
    return zoo.publish(store, "det", model_dir, zoo.lineage(None, model_dir / "config.py"), gates=gates).version


def test_promote_end_to_end_on_real_models(learned_model, tmp_path, capsys):
    """The learned model becomes production; a copy with a damaged head (a real, worse model) is blocked by the
    accuracy gate with the class and the drop named, and production stays where it was."""
    store_dir = str(tmp_path / "store")
    store = open_store(store_dir)
    good = tmp_path / "good"
    shutil.copytree(learned_model.model, good, ignore=shutil.ignore_patterns("work"))
    v_good = _publish(store, good)
    zoo.promote(store, "det", v_good, "candidate")
    out = tmp_path / "first"
    assert main(["promote", "det", str(out), "--dataset", str(learned_model.dataset), "--store", store_dir]) == 0
    assert zoo.aliases(store, "det")["production"]["version"] == v_good
    assert json.loads((out / "promotion.json").read_text())["gates"][0]["detail"].startswith("no production model")

    worse = tmp_path / "worse"
    shutil.copytree(good, worse)
    ckpt = torch.load(worse / "model.pth", weights_only=True)
    torch.manual_seed(0)
    for key, value in ckpt["state_dict"].items():
        if key.startswith("bbox_head.") and value.is_floating_point() and value.dim() == 4:
            value.add_(torch.randn_like(value) * value.std() * 2.0)
    torch.save(ckpt, worse / "model.pth")
    v_worse = _publish(store, worse)
    assert main(["promote", "det", str(tmp_path / "second"), "--dataset", str(learned_model.dataset), "--store", store_dir,
                 "--candidate", v_worse]) == 4
    err = capsys.readouterr().err
    assert "accuracy:" in err and "AP@0.5 dropped" in err and "not promoted to production" in err
    report = json.loads((tmp_path / "second" / "promotion.json").read_text())
    assert not report["passed"] and report["production"] == v_good
    assert zoo.aliases(store, "det")["production"]["version"] == v_good
