"""The run summary a local run prints (pipelines/report.py): every deploy gate with its verdict, the remedy for a
failed one, and which targets the alias covers."""
import json

from admlops.backends.parity import remedy
from admlops.pipelines.report import summarize_run


def _run(tmp_path, int8_passed: bool):
    gates = [{"backend": "onnxruntime", "precision": "fp32", "pytorch": 0.848, "measured": 0.848, "drop_points": 0.0,
              "allowed_points": 0.5, "passed": True},
             {"backend": "openvino", "precision": "int8", "pytorch": 0.848, "measured": 0.818, "drop_points": 3.0,
              "allowed_points": 1.5, "passed": int8_passed}]
    export = tmp_path / "export" / "onnx_model"
    export.mkdir(parents=True)
    (export / "gates.json").write_text(json.dumps({"metric": "bbox_mAP_50", "passed": int8_passed, "gates": gates}))
    (tmp_path / "register").mkdir()
    targets = ["onnxruntime:fp32"] + (["openvino:int8"] if int8_passed else [])
    blocked = [] if int8_passed else ["openvino int8 (drop 3.00 > 1.50 points)"]
    (tmp_path / "register" / "zoo_model").write_text(json.dumps({
        "name": "det", "version": "v1", "uri": "file:///store/models/det/v1/",
        "alias": {"alias": "candidate", "targets": targets, "blocked_targets": blocked}}))
    return summarize_run(tmp_path)


def test_a_failed_gate_is_named_with_its_remedy_and_the_alias_its_targets(tmp_path):
    text = _run(tmp_path, int8_passed=False)
    assert ("gate onnxruntime:fp32   bbox_mAP_50 drop +0.00 points, allowed 0.50: passed") in text
    assert ("gate openvino:int8      bbox_mAP_50 drop +3.00 points, allowed 1.50: FAILED: not deployable "
            "(not benchmarked, blocked from the alias)") in text
    assert f"remedy (int8): {remedy('int8')}" in text
    assert "alias candidate for onnxruntime:fp32" in text


def test_all_passed_names_no_remedy(tmp_path):
    text = _run(tmp_path, int8_passed=True)
    assert "remedy" not in text and "FAILED" not in text and text.endswith("alias candidate")


def test_the_tensorrt_engines_gates_are_summarised_beside_exports(tmp_path):
    """A GPU profile's run: export-trt's gates follow export's, a failed engine with the verdict and its remedy."""
    _run(tmp_path, int8_passed=True)
    engines = tmp_path / "export-trt" / "engines"
    engines.mkdir(parents=True)
    gate = {"backend": "tensorrt", "precision": "int8", "pytorch": 0.848, "measured": 0.80, "drop_points": 4.8,
            "allowed_points": 1.5, "passed": False}
    (engines / "gates.json").write_text(json.dumps({"metric": "bbox_mAP_50", "passed": False, "gates": [gate]}))
    text = summarize_run(tmp_path)
    assert "gate openvino:int8      bbox_mAP_50 drop +3.00 points, allowed 1.50: passed" in text
    assert "gate tensorrt:int8      bbox_mAP_50 drop +4.80 points, allowed 1.50: FAILED" in text
    assert f"remedy (int8): {remedy('int8')}" in text


def test_a_2d_export_without_onnx_runtime_is_summarised(tmp_path):
    """Targets without onnxruntime:fp32 (metrics.json has no "onnxruntime" key): every target's line, no KeyError."""
    export = tmp_path / "export" / "onnx_model"
    export.mkdir(parents=True)
    coco = lambda m: {"bbox": {"bbox_mAP_50": m, "bbox_mAP": m / 2}}  # noqa: E731
    (export / "metrics.json").write_text(json.dumps({"task": "image-detection", "pytorch": coco(0.8),
                                                      "backends": {"openvino-int8": coco(0.79)}}))
    text = summarize_run(tmp_path)
    assert "openvino-int8      mAP@0.5 0.790  mAP 0.395  (difference -0.0100)" in text


def test_gates_below_the_floor_are_said_to_be_not_meaningful(tmp_path):
    _run(tmp_path, int8_passed=True)
    gates = json.loads((tmp_path / "export" / "onnx_model" / "gates.json").read_text())
    gates["floor"] = {"label": "mAP@0.5", "value": 0.05, "pytorch": 0.0, "met": False}
    (tmp_path / "export" / "onnx_model" / "gates.json").write_text(json.dumps(gates))
    text = summarize_run(tmp_path)
    assert "gate onnxruntime:fp32   bbox_mAP_50 drop +0.00 points, allowed 0.50: not meaningful" in text
    assert ("parity not meaningful: PyTorch mAP@0.5 0.0000 is below the floor 0.0500: the model has learned too "
            "little for its parity gates to mean anything (not meaningful, not passed); registered without an alias") in text
