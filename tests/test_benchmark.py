"""The deploy benchmark sweep (components/benchmark) on a few images at batch 1 and 4: a PyTorch eager row and an
ONNX Runtime row on the same calls, statistics, memory, artifact size, the reports, the KFP component, bad input.

The model is RTMDet-tiny with fresh weights (no training: the benchmark measures, it does not judge the model),
exported the way the export step does. One intra-op thread per runtime keeps the run light on a shared machine.
Tests check what was measured and how, never how fast.
"""
from __future__ import annotations

import base64
import json
import math
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from admlops.errors import InputError, UsageError

IMAGES = 3  # batch 4 over 3 images: one call, topped up from the first image


@pytest.fixture(scope="module")
def model_dir(coco_dir, tmp_path_factory) -> Path:
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import MODELS

    from admlops import compat
    from admlops.configs import resolve
    from admlops.mmconfig import dataset_meta, use_dataset

    compat.apply()
    register_all_modules()
    out = tmp_path_factory.mktemp("model")
    cfg = Config.fromfile(str(resolve("models", "rtmdet_tiny_kitti")))
    use_dataset(cfg, coco_dir)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    # batch-norm statistics from one batch: with the initial ones the features vanish and every score is the prior
    # (0.01, the threshold); with these some boxes pass, so decoding and NMS have work on both sides
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad():
        model.train()._forward(torch.randn(2, 3, 192, 640))
    torch.save({"state_dict": model.state_dict(), "meta": {"dataset_meta": dataset_meta(coco_dir)}}, out / "model.pth")
    cfg.dump(str(out / "config.py"))
    return out


@pytest.fixture(scope="module")
def export_dir(coco_dir, model_dir, tmp_path_factory) -> Path:
    """What the export step publishes for the benchmark: end2end.onnx, deploy.py, model.py, an ORT artifact."""
    from mmdeploy.apis import torch2onnx

    from admlops.backends import get_backend
    from admlops.components.export.export import load_configs
    from admlops.tasks.image_detection import sync_post_processing

    out = tmp_path_factory.mktemp("export")
    deploy_cfg, model_cfg = load_configs("detection_onnxruntime_dynamic", model_dir / "config.py")
    sync_post_processing(deploy_cfg, model_cfg)
    deploy_cfg.dump(str(out / "deploy.py"))
    model_cfg.dump(str(out / "model.py"))
    val = json.loads((coco_dir / "annotations" / "val.json").read_text())
    torch2onnx(str(coco_dir / val["images"][0]["file_name"]), str(out), "end2end.onnx", deploy_cfg, model_cfg,
               str(model_dir / "model.pth"), device="cpu")
    (out / "onnxruntime-fp32").mkdir()
    built = get_backend("onnxruntime").build(out / "end2end.onnx", out / "onnxruntime-fp32", "fp32")
    (out / "built.json").write_text(json.dumps({"artifact": str(built.artifact)}))
    return out


@pytest.fixture(scope="module")
def report(coco_dir, export_dir, model_dir, tmp_path_factory) -> tuple[dict, Path]:
    from admlops.components.benchmark.benchmark import sweep

    out = tmp_path_factory.mktemp("bench") / "bench"
    result = sweep(coco_dir, export_dir, model_dir, out, backends=["onnxruntime:fp32"], batch_sizes=(1, 4),
                   threads=(1,), warmup=1, max_images=IMAGES, rounds=2)
    return result, out


def rows_of(result: dict, runtime: str) -> dict[int, dict]:
    return {r["batch"]: r for r in result["rows"] if r["runtime"] == runtime}


def test_rounds_pool_every_rounds_timings_and_take_the_median_load():
    from admlops.components.benchmark.benchmark import pool_rounds

    def result(load, seconds, peak, stages=None):
        batch = {"seconds": seconds, "peak_rss_mib": peak, **({"stages": stages} if stages else {})}
        return {"load_s": load, "threads_used": 1, "baseline_rss_mib": 100.0, "load_peak_rss_mib": 120.0,
                "process_peak_rss_mib": peak or 90.0, "memory_exact": True, "batches": {"1": batch}}

    pooled = pool_rounds([result(3.0, [0.1, 0.2], 150.0, {"network": [0.05]}),
                          result(1.0, [0.3], 170.0, {"network": [0.07]}), result(2.0, [0.4], 160.0, {"network": [0.06]})])
    assert pooled["load_s"] == 2.0 and pooled["process_peak_rss_mib"] == 170.0
    assert pooled["batches"]["1"] == {"seconds": [0.1, 0.2, 0.3, 0.4], "peak_rss_mib": 170.0,
                                      "stages": {"network": [0.05, 0.07, 0.06]}}
    assert pool_rounds([result(1.0, [0.1], None), result(1.0, [0.1], 5.0)])["batches"]["1"]["peak_rss_mib"] is None


def test_pytorch_and_ort_rows_time_the_same_calls(report):
    result, _ = report
    torch_rows, ort_rows = rows_of(result, "pytorch"), rows_of(result, "onnxruntime")
    assert set(torch_rows) == set(ort_rows) == {1, 4}
    assert result["images"] == IMAGES and len(result["image_files"]) == IMAGES
    for b in (1, 4):
        assert torch_rows[b]["batches"] == ort_rows[b]["batches"]
        assert len(torch_rows[b]["batches"]) == math.ceil(IMAGES / b)
        assert torch_rows[b]["calls"] == ort_rows[b]["calls"] == 2 * math.ceil(IMAGES / b)  # two rounds, pooled
        assert all(len(call) == b for call in torch_rows[b]["batches"])
        assert {i for call in ort_rows[b]["batches"] for i in call} == set(range(IMAGES))
        assert len(torch_rows[b]["timings_ms"]) == len(ort_rows[b]["timings_ms"]) == torch_rows[b]["calls"]
    assert ort_rows[4]["batches"] == [[0, 1, 2, 0]]
    assert result["rounds"] == 2
    assert ort_rows[1]["artifact"] == "export" and ort_rows[1]["precision"] == "fp32"


def test_statistics(report):
    result, _ = report
    for r in result["rows"]:
        lat = r["latency"]
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        ms = np.asarray(r["timings_ms"])
        # throughput counts images, not calls
        assert lat["throughput_ips"] == pytest.approx(r["batch"] * len(ms) / ms.sum() * 1000)
        assert r["images"] == r["batch"] * r["calls"]
        assert r["load_s"] > 0
    torch4, ort4 = rows_of(result, "pytorch")[4], rows_of(result, "onnxruntime")[4]
    assert ort4["speedup_p50"] == pytest.approx(torch4["latency"]["p50_ms"] / ort4["latency"]["p50_ms"])
    assert rows_of(result, "pytorch")[1]["speedup_p50"] == pytest.approx(1.0)


def test_both_rows_do_the_same_work(report):
    """The PyTorch row decodes and runs NMS like the exported graph: both find boxes, and score the same mAP."""
    result, _ = report
    torch_row, ort_row = rows_of(result, "pytorch")[1], rows_of(result, "onnxruntime")[1]
    assert torch_row["boxes"] > 0 and ort_row["boxes"] > 0
    assert torch_row["mAP50"] is not None and ort_row["mAP50"] is not None
    assert ort_row["mAP50_diff"] == pytest.approx(ort_row["mAP50"] - torch_row["mAP50"])
    assert abs(ort_row["mAP50_diff"]) <= 0.02


def test_memory_excludes_the_runtime_import(report):
    result, _ = report
    for r in result["rows"]:
        mem = r["memory"]
        assert mem["added_mib"] is not None and mem["added_mib"] >= 0
        assert mem["added_mib"] == pytest.approx(mem["peak_rss_mib"] - mem["baseline_rss_mib"])
    # the control: PyTorch's process high-water mark (torch and mmdet imported) is far above what inference adds
    for b, r in rows_of(result, "pytorch").items():
        mem = r["memory"]
        assert mem["baseline_rss_mib"] > 200  # torch and mmdet's models are imported before the baseline
        assert mem["process_peak_mib"] >= mem["baseline_rss_mib"] + mem["added_mib"] - 1
        assert mem["process_peak_mib"] - mem["added_mib"] > 200


def test_artifact_size_is_the_file_size(report, export_dir, model_dir):
    result, _ = report
    built = Path(json.loads((export_dir / "built.json").read_text())["artifact"])
    assert rows_of(result, "onnxruntime")[1]["artifact_bytes"] == built.stat().st_size
    assert rows_of(result, "pytorch")[1]["artifact_bytes"] == (model_dir / "model.pth").stat().st_size


def test_machine_and_versions_recorded(report):
    result, _ = report
    m = result["machine"]
    assert m["cpu"] and m["logical_cores"] >= 1 and m["usable_cores"] >= 1
    assert {"torch", "onnxruntime", "mmdet", "mmdeploy"} <= set(result["versions"])
    assert {r["threads_used"] for r in result["rows"]} == {1}
    assert "NMS" in result["timed"] and "preprocess" in result["timed"]


def test_reports(report):
    result, out = report
    assert sorted(p.name for p in out.iterdir()) == ["benchmark.json", "benchmark.md", "report.html"]
    assert json.loads((out / "benchmark.json").read_text())["rows"] == json.loads(json.dumps(result["rows"]))
    md = (out / "benchmark.md").read_text()
    assert md.startswith("# Deploy benchmark") and "| p99 (ms) |" in md
    assert len([line for line in md.splitlines() if line.startswith("| pytorch ") or line.startswith("| onnxruntime ")]) == 4
    assert result["machine"]["cpu"] in md
    page = (out / "report.html").read_text()
    pngs = re.findall(r"<img class='plot' alt='([^']+)' src='data:image/png;base64,([^']+)'>", page)
    assert [title for title, _ in pngs] == ["Latency per call", "Latency against throughput (one point per batch size)"]
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for _, data in pngs)
    assert "src='http" not in page and "<link" not in page  # self-contained


def test_rows_name_the_kernels_they_ran(report):
    result, out = report
    torch_row, ort_row = rows_of(result, "pytorch")[1], rows_of(result, "onnxruntime")[1]
    assert torch_row["kernels"].startswith("ATen ") and ort_row["kernels"] == "MLAS fp32; CPUExecutionProvider"
    assert result["machine"]["int8_kernels"] in ("amx", "avx512_vnni", "avx_vnni", "avx512", "avx2", "sse4")
    md = (out / "benchmark.md").read_text()
    assert f"| onnxruntime:fp32 | {ort_row['kernels']} |" in md and "## Not deployable" not in md


@pytest.mark.parametrize("where", ["export", "engines"])
def test_a_target_that_failed_its_gate_is_listed_not_timed(coco_dir, export_dir, model_dir, tmp_path, where):
    """export's gates.json (or export-trt's, given as ``engines_dir``: the GPU profile's engines) says onnxruntime
    fp32 failed: the sweep times PyTorch alone and lists the target with its gate in the report."""
    from admlops.components.benchmark.benchmark import sweep

    failed = tmp_path / "export"
    shutil.copytree(export_dir, failed)
    gated = failed if where == "export" else tmp_path / "engines"
    gated.mkdir(exist_ok=True)
    gate = {"backend": "onnxruntime", "precision": "fp32", "pytorch": 0.5, "measured": 0.4, "drop_points": 10.0,
            "allowed_points": 0.5, "passed": False}
    (gated / "gates.json").write_text(json.dumps({"metric": "bbox_mAP_50", "passed": False, "gates": [gate]}))
    result = sweep(coco_dir, failed, model_dir, tmp_path / "out", backends=["onnxruntime:fp32"], batch_sizes=(1,),
                   threads=(1,), warmup=0, max_images=1, engines_dir=tmp_path / "engines" if where == "engines" else None)
    assert {r["runtime"] for r in result["rows"]} == {"pytorch"} and result["not_deployable"] == [gate]
    md = (tmp_path / "out" / "benchmark.md").read_text()
    assert "## Not deployable" in md and "| onnxruntime:fp32 | +10.00 | 0.50 |" in md


def test_built_artifact_size(export_dir, tmp_path):
    """An artifact the export step did not build is built here; its size is that of the file the backend wrote."""
    from admlops.components.benchmark.benchmark import artifact_bytes, build_artifacts

    bare = tmp_path / "export"
    bare.mkdir()
    shutil.copy(export_dir / "end2end.onnx", bare / "end2end.onnx")
    (art,) = build_artifacts([("onnxruntime", "fp32")], bare, tmp_path / "scratch", lambda: [], {}).values()
    files = [p for p in Path(art["dir"]).rglob("*") if p.is_file() and p.suffix != ".json"]
    assert art["source"] == "built" and files
    assert artifact_bytes(art["dir"]) == sum(p.stat().st_size for p in files)


def test_batch_plan_and_parsing():
    from admlops.backends import parse_targets
    from admlops.components.benchmark.benchmark import batch_plan, parse_ints

    assert batch_plan(3, 1) == [[0], [1], [2]]
    assert batch_plan(10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert batch_plan(2, 1, repeats=2) == [[0], [1], [0], [1]]
    assert parse_ints("1, 4,8", "batch sizes") == [1, 4, 8]
    # one grammar with export's targets: a list of items or one comma-separated string; a bare name is refused
    assert parse_targets(["onnxruntime:fp32", " onnxruntime:fp32", ""]) == [("onnxruntime", "fp32")]
    assert parse_targets(["onnxruntime:fp32,openvino:int8"]) == parse_targets("onnxruntime:fp32, openvino:int8")
    with pytest.raises(UsageError, match="deploy target 'openvino': expected BACKEND:PRECISION"):
        parse_targets(["openvino"])
    with pytest.raises(UsageError, match="x"):
        parse_ints("1,x", "batch sizes")


@pytest.mark.parametrize("backends,named", [(["nope"], "'nope'"), (["onnxruntime:int4"], "'int4'")])
def test_unknown_backend_or_precision(coco_dir, export_dir, model_dir, tmp_path, backends, named):
    from admlops.components.benchmark.benchmark import sweep

    with pytest.raises(UsageError, match=named) as err:
        sweep(coco_dir, export_dir, model_dir, tmp_path / "out", backends=backends)
    assert err.value.exit_code == 2 and not (tmp_path / "out").exists()


def test_empty_val_split(coco_dir, export_dir, model_dir, tmp_path):
    from admlops.components.benchmark.benchmark import sweep

    data = tmp_path / "data"
    shutil.copytree(coco_dir / "annotations", data / "annotations")
    shutil.copy(coco_dir / "summary.json", data / "summary.json")
    val = data / "annotations" / "val.json"
    val.write_text(json.dumps({**json.loads(val.read_text()), "images": [], "annotations": []}))
    with pytest.raises(InputError) as err:
        sweep(data, export_dir, model_dir, tmp_path / "out", backends=["onnxruntime:fp32"])
    assert err.value.exit_code == 3 and err.value.path == str(val) and "no images" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_component_wires_the_outputs(monkeypatch, tmp_path):
    """The KFP component: one sweep call, its Markdown and HTML copied to the UI artifacts, headline metadata."""
    from admlops.components.benchmark import benchmark as lib
    from admlops.components.benchmark.component import benchmark

    calls = {}

    def fake_sweep(dataset, export, model, out, **kwargs):
        calls.update(dataset=dataset, export=export, model=model, **kwargs)
        Path(out).mkdir()
        (Path(out) / "benchmark.md").write_text("# md")
        (Path(out) / "report.html").write_text("<html>")
        return {"summary": {"fastest": "onnxruntime:fp32", "fastest_speedup_p50": 2.0, "fastest_mAP50_diff": None}}

    monkeypatch.setattr(lib, "sweep", fake_sweep)
    names = ("dataset", "onnx", "model", "results", "table", "html")
    art = {k: SimpleNamespace(path=str(tmp_path / k), metadata={}) for k in names}
    benchmark.python_func(dataset=art["dataset"], onnx_model=art["onnx"], model=art["model"],
                          backends="onnxruntime,openvino:int8", batch_sizes="1,4", threads="0,2", warmup=2, max_images=3,
                          results=art["results"], table=art["table"], html=art["html"])
    assert calls == {"dataset": art["dataset"].path, "export": art["onnx"].path, "model": art["model"].path,
                     "backends": ["onnxruntime", "openvino:int8"], "batch_sizes": [1, 4], "threads": [0, 2], "warmup": 2,
                     "max_images": 3, "engines_dir": None}  # no export-trt output: export's gates alone
    assert Path(art["table"].path).read_text() == "# md" and Path(art["html"].path).read_text() == "<html>"
    assert art["results"].metadata == {"fastest": "onnxruntime:fp32", "fastest_speedup_p50": 2.0}
    engines = SimpleNamespace(path=str(tmp_path / "engines"), metadata={})  # the GPU profile's benchmark-trt
    benchmark.python_func(dataset=art["dataset"], onnx_model=art["onnx"], model=art["model"], backends="tensorrt:fp16",
                          batch_sizes="1", threads="0", warmup=0, max_images=1, engines=engines,
                          results=SimpleNamespace(path=str(tmp_path / "trt"), metadata={}), table=art["table"],
                          html=art["html"])
    assert calls["engines_dir"] == engines.path
