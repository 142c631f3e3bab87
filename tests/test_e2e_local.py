"""The detection2d pipeline end to end through kfp.local, reduced (few frames, few iterations)."""
import json
import subprocess
import sys

import numpy as np
import pytest

CLI = [sys.executable, "-m", "admlops.pipelines.cli"]


@pytest.fixture(scope="module")
def run_dir(kitti_root, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    res = subprocess.run(
        CLI + ["run", "detection2d", "--local", "--store", str(store), "--param", f"kitti_root={kitti_root}",
               "--param", "train_max_iters=4", "--param", "train_batch_size=2", "--param", "bench_max_images=3",
               "--param", "bench_warmup=1"],
        capture_output=True, text=True, timeout=1200,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    runs = list((store / "runs").iterdir())
    assert len(runs) == 1 and f"run: {runs[0]}" in res.stdout
    assert "PyTorch      mAP@0.5" in res.stdout and "| p50 (ms) |" in res.stdout
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


def test_evaluate_artifact(run_dir):
    report = json.loads((run_dir / "evaluate" / "report" / "metrics.json").read_text())
    assert set(report["per_class"]) == {"Car", "Pedestrian", "Cyclist"}
    assert 0.0 <= report["bbox"]["bbox_mAP_50"] <= 1.0
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
    assert abs(metrics["mAP50_difference"]) <= 0.01


def test_benchmark_artifact(run_dir):
    result = json.loads((run_dir / "benchmark" / "results" / "benchmark.json").read_text())
    lat = result["latency"]
    assert result["images"] == 3 and lat["p50_ms"] > 0 and lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert result["peak_rss_mib"] > 50 and result["versions"]["onnxruntime"] and result["cpu"]
    assert result["input_shape"] == [1, 3, 192, 640]
    table = (run_dir / "benchmark" / "table").read_text()
    assert table.startswith("# ONNX Runtime benchmark") and "| p99 (ms) |" in table


def test_bad_dataset_fails_the_run_cleanly(tmp_path):
    res = subprocess.run(
        CLI + ["run", "detection2d", "--local", "--store", str(tmp_path), "--param", f"kitti_root={tmp_path / 'nope'}"],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 4, res.stderr[-3000:]
    assert f"{tmp_path / 'nope' / 'training' / 'label_2'}: not a KITTI object dataset" in res.stdout + res.stderr
    assert "Inner task failed: " in res.stderr and "convert" in res.stderr
    (run,) = (tmp_path / "runs").iterdir()
    dataset = run / "convert" / "dataset"
    assert not dataset.exists() or not any(dataset.iterdir())
    assert not (run / "train").exists()


def test_register_artifact_and_lake(run_dir):
    from admlops import catalog, zoo
    from admlops.objectstore import open_store

    store = open_store(run_dir.parent.parent)
    record = json.loads((run_dir / "register" / "zoo_model").read_text())
    assert record["alias"]["alias"] == "candidate" and zoo.resolve(store, record["name"], "candidate") == record["version"]
    info = catalog.show(store, "models", record["name"], record["version"]).info
    lineage = info["lineage"]
    assert lineage["pipeline_run_id"] == run_dir.name and lineage["code_version"]
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
