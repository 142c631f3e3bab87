"""Latency of an exported ONNX model under ONNX Runtime, over the val images, after warm-up.

Preprocessing (decode, resize, pad, normalise) follows the model's test pipeline and is not timed;
each timed call is one ``session.run`` on one image. Writes ``benchmark.json`` and ``benchmark.md``.
"""
from __future__ import annotations

import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from admlops import compat
from admlops.localfs import atomic_dir


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("onnxruntime", "torch", "mmdet", "mmdeploy", "mmcv", "admlops"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def ort_session(onnx_file: str | Path, threads: int = 0):
    """An ONNX Runtime CPU session with mmdeploy's custom-op library registered when it exists."""
    import onnxruntime as ort
    from mmdeploy.backend.onnxruntime.init_plugins import get_ops_path

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    ops = get_ops_path()
    if ops and Path(ops).exists():
        opts.register_custom_ops_library(ops)
    return ort.InferenceSession(str(onnx_file), sess_options=opts, providers=["CPUExecutionProvider"])


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "throughput_ips": float(len(ms) / (ms.sum() / 1000.0)),
    }


def markdown_table(result: dict) -> str:
    lat = result["latency"]
    rows = [
        ("images", result["images"]), ("warm-up runs", result["warmup"]),
        ("p50 (ms)", f"{lat['p50_ms']:.1f}"), ("p90 (ms)", f"{lat['p90_ms']:.1f}"), ("p99 (ms)", f"{lat['p99_ms']:.1f}"),
        ("mean (ms)", f"{lat['mean_ms']:.1f}"), ("throughput (img/s)", f"{lat['throughput_ips']:.2f}"),
        ("peak RSS (MiB)", f"{result['peak_rss_mib']:.0f}"), ("CPU", result["cpu"]), ("threads", result["threads"]),
    ] + [(k, v) for k, v in result["versions"].items()]
    lines = ["# ONNX Runtime benchmark", "", "| metric | value |", "| --- | --- |"]
    return "\n".join(lines + [f"| {k} | {v} |" for k, v in rows]) + "\n"


def benchmark(
    dataset_dir: str | Path,
    onnx_dir: str | Path,
    out: str | Path,
    warmup: int = 5,
    max_images: int = 0,
    threads: int = 0,
) -> dict:
    """Time ``onnx_dir/end2end.onnx`` (export's output) on the val images; publishes results at ``out``."""
    compat.apply()
    from mmdeploy.apis.utils import build_task_processor
    from mmengine.config import Config
    from mmengine.registry import MODELS

    onnx_dir, dataset_dir = Path(onnx_dir), Path(dataset_dir)
    deploy_cfg = Config.fromfile(str(onnx_dir / "deploy.py"))
    model_cfg = Config.fromfile(str(onnx_dir / "model.py"))
    task = build_task_processor(model_cfg, deploy_cfg, "cpu")
    preprocessor = MODELS.build(model_cfg.model.data_preprocessor)
    val = json.loads((dataset_dir / "annotations" / "val.json").read_text())
    images = [str(dataset_dir / im["file_name"]) for im in val["images"]]
    if max_images:
        images = images[:max_images]
    if not images:
        raise ValueError(f"{dataset_dir}: the val split has no images to benchmark on")
    session = ort_session(onnx_dir / "end2end.onnx", threads)
    input_name = session.get_inputs()[0].name
    tensors = [task.create_input(img, data_preprocessor=preprocessor)[1].numpy() for img in tqdm(images, desc="preprocess", unit="img")]
    for i in range(warmup):
        session.run(None, {input_name: tensors[i % len(tensors)]})
    timings = []
    for tensor in tqdm(tensors, desc="benchmark", unit="img"):
        start = time.perf_counter()
        session.run(None, {input_name: tensor})
        timings.append(time.perf_counter() - start)
    result = {
        "model": str(onnx_dir / "end2end.onnx"),
        "images": len(images),
        "warmup": warmup,
        "input_shape": list(tensors[0].shape),
        "latency": latency_stats(timings),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "cpu": cpu_model(),
        "threads": threads or "ort default",
        "versions": versions(),
    }
    with atomic_dir(out) as tmp:
        (tmp / "benchmark.json").write_text(json.dumps(result, indent=2))
        (tmp / "benchmark.md").write_text(markdown_table(result))
    return result
