"""The detection2d pipeline end to end through kfp.local, reduced (few frames, few iterations); and the export
of a model that has learned something (``learned_model``): ONNX Runtime agrees with PyTorch in mAP and box by box."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import LEARNED_MAP50_FLOOR, admlops, box_iou, pytorch_val_images  # noqa: E402

CLI = [sys.executable, "-m", "admlops.pipelines.cli"]


@pytest.fixture(scope="module")
def run_dir(kitti_root, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    res = subprocess.run(
        CLI + ["run", "detection2d", "--local", "--store", str(store), "--param", f"source={kitti_root}",
               "--param", "train_max_iters=4", "--param", "train_batch_size=2", "--param", "bench_max_images=3",
               "--param", "bench_warmup=1", "--param", "deploy_backends=onnxruntime:fp32,openvino:int8",
               "--param", "deploy_calibration_images=4", "--param", "bench_batch_sizes=1,2"],
        capture_output=True, text=True, timeout=1200,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    runs = list((store / "runs").iterdir())
    assert len(runs) == 1 and f"run: {runs[0]}" in res.stdout
    assert "PyTorch      mAP@0.5" in res.stdout and "| p50 (ms) |" in res.stdout
    assert "gate onnxruntime:fp32" in res.stdout and "gate openvino:int8" in res.stdout  # every gate in the summary
    assert "parity not meaningful: PyTorch mAP@0.5" in res.stdout and "registered without an alias" in res.stdout
    return runs[0]


def test_convert_artifact(run_dir):
    data = run_dir / "convert" / "dataset"
    summary = json.loads((data / "summary.json").read_text())
    assert summary["frames"]["train"] + summary["frames"]["val"] == 20
    val = json.loads((data / "annotations" / "val.json").read_text())
    assert len(val["images"]) == summary["frames"]["val"] and val["annotations"]


def test_train_artifact(run_dir):
    import torch

    model = run_dir / "train" / "model"
    ckpt = torch.load(model / "model.pth", weights_only=True)  # published weights need no allowlist
    assert set(ckpt) == {"state_dict", "meta"} and ckpt["meta"]["iter"] == 4
    assert ckpt["meta"]["dataset_meta"]["classes"] == ("Car", "Pedestrian", "Cyclist")
    assert any(k.startswith("bbox_head.") for k in ckpt["state_dict"])
    log = json.loads((model / "train_log.json").read_text())
    assert [r["iter"] for r in log if "loss" in r][-1] == 4
    assert "num_classes=3" in (model / "config.py").read_text().replace(" ", "")
    assert list((model / "work").glob("iter_4.pth"))
    # W&B, offline, one run grouped by the pipeline run
    assert len(list((model / "work" / "wandb").rglob("offline-run-*/run-*.wandb"))) == 1


def _assert_coco_numbers(report: dict, dataset, report_dir) -> None:
    """``report`` (evaluate's metrics.json) holds COCOeval's numbers for the detections evaluate wrote beside it,
    over every val image and no other."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann = dataset / "annotations" / "val.json"
    dets = json.loads((report_dir / "work" / "detections.bbox.json").read_text())
    val_ids = {im["id"] for im in json.loads(ann.read_text())["images"]}
    assert dets and {d["image_id"] for d in dets} <= val_ids
    gt = COCO(str(ann))
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert sorted(ev.params.imgIds) == sorted(val_ids)
    for key, k in (("bbox_mAP", 0), ("bbox_mAP_50", 1), ("bbox_mAP_75", 2)):
        assert report["bbox"][key] == pytest.approx(max(ev.stats[k], 0.0), abs=5e-4), key  # CocoMetric rounds to 3 places
    ap50 = [c["AP50"] for c in report["per_class"].values() if c["AP50"] == c["AP50"]]  # NaN: no such object in val
    assert report["bbox"]["bbox_mAP_50"] == pytest.approx(sum(ap50) / len(ap50), abs=5e-4)


def test_evaluate_artifact(run_dir):
    report = json.loads((run_dir / "evaluate" / "report" / "metrics.json").read_text())
    assert set(report["per_class"]) == {"Car", "Pedestrian", "Cyclist"}
    # the numbers are COCOeval's over the val split for the detections the step wrote, of val images only
    # (all near 0 after 4 iterations: test_onnx_agrees_with_pytorch_on_a_learned_model checks them on a learned model)
    _assert_coco_numbers(report, run_dir / "convert" / "dataset", run_dir / "evaluate" / "report")
    # the KFP Metrics artifact (what the Kubeflow UI shows) carries the same numbers
    logged = json.loads((run_dir / "evaluate" / "executor_output.json").read_text())
    metrics = logged["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["mAP_50"] == round(report["bbox"]["bbox_mAP_50"], 4)
    assert set(metrics) == {"mAP", "mAP_50", "mAP_75", "AP50_Car", "AP50_Pedestrian", "AP50_Cyclist"}


def test_export_artifact(run_dir):
    import onnxruntime as ort

    onnx_dir = run_dir / "export" / "onnx_model"
    sess = ort.InferenceSession(str(onnx_dir / "end2end.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["dets", "labels"]
    dets, labels = sess.run(None, {"input": np.zeros((1, 3, 192, 640), np.float32)})
    assert dets.shape[0] == 1 and dets.shape[2] == 5 and labels.shape[:2] == dets.shape[:2]
    metrics = json.loads((onnx_dir / "metrics.json").read_text())
    assert set(metrics["onnxruntime"]["per_class"]) == {"Car", "Pedestrian", "Cyclist"}
    assert metrics["pytorch"]["bbox"] == json.loads((run_dir / "evaluate" / "report" / "metrics.json").read_text())["bbox"]
    # (agreement with PyTorch is tested on a model that has learned something: test_onnx_agrees_with_pytorch_*)


def test_benchmark_artifact(run_dir):
    result = json.loads((run_dir / "benchmark" / "results" / "benchmark.json").read_text())
    assert result["images"] == 3 and result["input_shape"] == [3, 192, 640] and result["versions"]["onnxruntime"]
    gates = json.loads((run_dir / "export" / "onnx_model" / "gates.json").read_text())["gates"]
    # every target that passed its gate is timed beside PyTorch; one that failed is listed, not timed
    assert {(r["runtime"], r["precision"]) for r in result["rows"]} == {("pytorch", "fp32")} | {
        (g["backend"], g["precision"]) for g in gates if g["passed"]}
    assert result["not_deployable"] == [g for g in gates if not g["passed"]]
    assert {r["batch"] for r in result["rows"]} == {1, 2}
    for r in result["rows"]:
        assert 0 < r["latency"]["p50_ms"] <= r["latency"]["p90_ms"] <= r["latency"]["p99_ms"]
    table = (run_dir / "benchmark" / "table").read_text()
    assert table.startswith("# Deploy benchmark") and "| p99 (ms) |" in table
    assert "data:image/png;base64," in (run_dir / "benchmark" / "html").read_text()


def test_deploy_gates_reach_the_zoo(run_dir):
    gates = json.loads((run_dir / "export" / "onnx_model" / "gates.json").read_text())
    assert [(g["backend"], g["precision"]) for g in gates["gates"]] == [("onnxruntime", "fp32"), ("openvino", "int8")]
    zoo_model = json.loads((run_dir / "register" / "zoo_model").read_text())
    assert zoo_model["gates_passed"] is gates["passed"]
    # a 4-iteration model has learned too little for parity to mean anything (PyTorch below the mAP@0.5 floor):
    # registered, with its gates, but no target is deployable and no alias is set
    pytorch = json.loads((run_dir / "evaluate" / "report" / "metrics.json").read_text())["bbox"]["bbox_mAP_50"]
    assert gates["floor"] == {"label": "mAP@0.5", "value": 0.05, "pytorch": pytorch, "met": False}
    assert not gates["passed"] and zoo_model["deployable_targets"] == [] and zoo_model["alias"] is None


def test_run_prints_one_line_per_step(run_dir):
    steps = json.loads((run_dir / "steps.json").read_text())
    assert {s["task"] for s in steps} == {"shard-plan", "for-loop-1-iteration-0/convert-shard", "convert", "analyze",
                                          "train", "evaluate", "export", "benchmark", "register"}
    assert all(s["status"] == "SUCCESS" and (run_dir / "logs" / f"{s['task']}.log").is_file() for s in steps)
    assert (run_dir / "analyze" / "html.html").is_file() and "analyze/html.html" in (run_dir / "index.html").read_text()


def test_bad_dataset_fails_the_run_cleanly(tmp_path):
    res = subprocess.run(
        CLI + ["run", "detection2d", "--local", "--store", str(tmp_path), "--param", f"source={tmp_path / 'nope'}"],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 4, res.stderr[-3000:]
    assert f"{tmp_path / 'nope' / 'training' / 'label_2'}: not a KITTI object dataset" in res.stdout + res.stderr
    assert "admlops: error: task for-loop-1-iteration-0/convert-shard failed; its log is " in res.stderr
    assert "Traceback" not in res.stdout
    (run,) = (tmp_path / "runs").iterdir()
    dataset = run / "convert" / "dataset"
    assert not dataset.exists() or not any(dataset.iterdir())
    assert not (run / "train").exists()


def test_register_artifact_and_lake(run_dir):
    from admlops import catalog, zoo
    from admlops.objectstore import open_store

    store = open_store(run_dir.parent.parent)
    record = json.loads((run_dir / "register" / "zoo_model").read_text())
    assert record["alias"] is None and "candidate" not in zoo.aliases(store, record["name"])  # below the floor
    info = catalog.show(store, "models", record["name"], record["version"]).info
    lineage = info["lineage"]
    trained = json.loads((run_dir / "train" / "executor_output.json").read_text())["artifacts"]["model"]["artifacts"][0]
    # one run id everywhere: the zoo's lineage, training's checkpoints and W&B group (the pipeline job id)
    assert lineage["pipeline_run_id"] == trained["metadata"]["run_id"] and "{{" not in lineage["pipeline_run_id"]
    assert lineage["pipeline_run_id"] and lineage["code_version"]
    converted = json.loads((run_dir / "convert" / "executor_output.json").read_text())
    meta = converted["artifacts"]["dataset"]["artifacts"][0]["metadata"]
    assert lineage["dataset"] == {k: meta["version"][k] for k in ("name", "version", "manifest_sha256")}
    assert meta["object_uri"] == store.uri(f"datasets/{meta['version']['name']}/{meta['version']['version']}/")
    # the dataset version in the lake is exactly what the pipeline trained on
    data = catalog.show(store, "datasets", meta["version"]["name"], meta["version"]["version"])
    assert data.manifest_sha256 == lineage["dataset"]["manifest_sha256"]
    assert {n for n, _ in catalog.list_versions(store, "datasets")} == {"kitti", "kitti-coco-kitti-3class"}
    files = {r["path"]: r["role"] for r in catalog.read_manifest(store, "models", record["name"], record["version"])}
    assert files["model.pth"] == "checkpoint" and files["onnx/end2end.onnx"] == "exported"
    assert {"metrics/pytorch.json", "metrics/onnx.json", "metrics/benchmark.json"} <= set(files)


def test_onnx_agrees_with_pytorch_on_a_learned_model(learned_model, learned_onnx, run_dir, tmp_path):
    metrics = json.loads((learned_onnx / "metrics.json").read_text())
    pytorch, onnx = metrics["pytorch"]["bbox"]["bbox_mAP_50"], metrics["onnxruntime"]["bbox"]["bbox_mAP_50"]
    print(f"learned model: PyTorch mAP@0.5 {pytorch:.3f}, ONNX Runtime {onnx:.3f}")
    assert metrics["pytorch"] == learned_model.metrics
    assert pytorch > LEARNED_MAP50_FLOOR
    _assert_coco_numbers(learned_model.metrics, learned_model.dataset, learned_model.metrics_file.parent)
    assert abs(onnx - pytorch) <= 0.01 and metrics["difference"] == pytest.approx(onnx - pytorch)
    for name, per_class in metrics["onnxruntime"]["per_class"].items():
        assert per_class["AP50"] == pytest.approx(metrics["pytorch"]["per_class"][name]["AP50"], abs=0.02), name
    # the control: the pipeline's 4-iteration model, on the same val split, stays below the floor (and so
    # differs from the learned model by far more than the 0.01 the export is allowed)
    admlops("evaluate", learned_model.dataset, run_dir / "train" / "model", tmp_path / "control")
    control = json.loads((tmp_path / "control" / "metrics.json").read_text())
    print(f"4-iteration model on the same val split: mAP@0.5 {control['bbox']['bbox_mAP_50']:.3f}")
    assert control["bbox"]["bbox_mAP_50"] < LEARNED_MAP50_FLOOR and pytorch - control["bbox"]["bbox_mAP_50"] > 0.01
    for name, per_class in control["per_class"].items():
        assert abs(per_class["AP50"] - metrics["pytorch"]["per_class"][name]["AP50"]) > 0.02, name


TOP = 5  # detections compared per image: the most confident ones
MIN_SCORE = 0.3
# Scores this close are equal at float32's resolution (near 1 its spacing is 6e-8): between two overlapping
# candidates of equal score, which one NMS keeps is not defined (it follows the CPU's floating-point order), so
# such a pair is held to overlapping the same object (IoU >= 0.5), not to being the same box.
TIE = 1e-6


def _matches(image, dets: np.ndarray, labels: np.ndarray) -> list[tuple[float, float]]:
    """``image``'s top PyTorch detections (score >= MIN_SCORE) matched one-to-one, most confident first, to the
    same-class ONNX box of highest IoU not matched yet: (IoU, score gap) per detection; (0, 1) when none is left."""
    out, free = [], np.ones(len(dets), dtype=bool)
    for k in [k for k in range(min(TOP, len(image.scores))) if image.scores[k] >= MIN_SCORE]:
        same = np.flatnonzero((labels == image.labels[k]) & free)
        if not same.size:
            out.append((0.0, 1.0))
            continue
        ious = box_iou(image.boxes[k], dets[same, :4])[0]
        best = same[int(ious.argmax())]
        free[best] = False
        out.append((float(ious.max()), abs(float(dets[best, 4]) - float(image.scores[k]))))
    return out


def _agree(iou: float, gap: float) -> bool:
    """The same box and score; or, for a tie in score, a box on the same object."""
    return gap < 0.01 and (iou > 0.95 or (gap < TIE and iou >= 0.5))


def test_onnx_boxes_match_pytorch_boxes(learned_model, learned_onnx):
    """Known boxes: on a few val images the learned model's confident PyTorch detections are ground-truth boxes,
    and ONNX Runtime returns the same boxes one-to-one (IoU > 0.95, same class, score within 0.01; a tie in score
    may keep the other of two overlapping candidates)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(learned_onnx / "end2end.onnx"), providers=["CPUExecutionProvider"])
    images = pytorch_val_images(learned_model.model, learned_model.dataset, 6)
    onnx = []
    for image in images:
        dets, labels = sess.run(None, {"input": image.inputs})
        onnx.append((dets[0], labels[0]))
    compared = hits = same_box = 0
    for image, (dets, labels) in zip(images, onnx, strict=True):
        matches = _matches(image, dets, labels)
        assert matches, f"{image.file}: no confident detection to compare"
        for k, (iou, score_gap) in enumerate(matches):
            assert _agree(iou, score_gap), (image.file, k, iou, score_gap)
            same_box += iou > 0.95
            gt = np.flatnonzero(image.gt_labels == image.labels[k])
            hits += bool(gt.size) and box_iou(image.boxes[k], image.gt_boxes[gt]).max() >= 0.5
        compared += len(matches)
    print(f"{compared} top detections compared, {same_box} the same box (the rest ties in score); {hits} of them "
          f"on a ground-truth box of their class (IoU >= 0.5)")
    assert compared >= 20 and same_box >= 0.5 * compared
    assert hits >= 0.7 * compared  # the PyTorch boxes are the right boxes (measured: 0.85 of them)
    # the control: against another image's ONNX boxes the same check fails
    for i, image in enumerate(images):
        other = _matches(image, *onnx[(i + 1) % len(images)])
        assert not all(_agree(iou, gap) for iou, gap in other), image.file


def test_agreement_rule_on_known_pairs():
    """The rule itself: a tie in score on the same object agrees, a tie on another object or a near box with
    another score does not."""
    assert _agree(0.97, 0.005) and _agree(0.875, 9e-8)
    assert not _agree(0.875, 1e-3) and not _agree(0.3, 9e-8) and not _agree(0.99, 0.02)
