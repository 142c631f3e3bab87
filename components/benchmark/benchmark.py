"""The deploy benchmark sweep: backend x precision x batch size x threads, with a PyTorch eager row, on the same
preprocessed val images in one run.

Preprocessing (decode, resize, pad, normalise: the model's test pipeline, through mmdeploy's task processor) runs
once, here, and is not timed; the tensors are batched (one padded shape) and every row times the same calls on
them. Each (runtime, precision, threads) row runs in a fresh child process (worker.py: what is timed and how
memory is measured are defined there), so its load time and memory are its own.

Backend artifacts come from the export directory (``<backend>-<precision>/``); one that is not there is built
here from ``end2end.onnx`` with ``get_backend(name).build``, as export builds it (int8 calibrated on train
images), into a scratch directory.

The model's task (admlops.tasks, from the export's model.py) builds the inputs (``bench_inputs``), loads each row's
model in the worker, and says what is timed and the default batch sizes. A 2D detector: the val images, preprocessed
once, each row's mAP@0.5 on them. A 3D voxel detector: the val scans of its mmdet3d KITTI data
root, one scan per call, with voxelization, network and post-processing timed apart in every row (``stages``: mean,
p50, p90 per stage); the scans are loaded and range filtered once, untimed; its rows' accuracy is the export's parity
gate (KITTI AP on the whole val split).

A target whose parity gate failed in the export (its ``gates.json``) is not deployable: it is not timed, and the
report lists it with its gate (``not_deployable``). Every row names the kernels its runtime ran (``kernels``: the
CPU plugin's own account for OpenVINO, the class the CPU flags select for ONNX Runtime's MLAS and PyTorch's ATen).

Writes ``benchmark.json`` (machine, versions, every row with its per-call timings), ``benchmark.md`` and
``report.html`` (self-contained) atomically at ``out``.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from admlops import cpu
from admlops.backends.calibration import CALIBRATION_IMAGES
from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir

PYTORCH = "pytorch"
VERSION_PACKAGES = ("torch", "mmcv", "mmengine", "mmdet", "mmdeploy", "onnxruntime", "openvino", "nncf", "tensorrt",
                    "numpy", "admlops")
MEMORY = ("added_mib = the row's child process: peak RSS during the model load and that batch size's warm-up and "
          "timed calls (kernel high-water mark, reset before each) minus its RSS just before the load (runtime "
          "package imported, inputs loaded). process_peak_mib is that process's lifetime high-water mark, imports "
          "(torch, ...) included.")


# ---- the machine ---------------------------------------------------------------------------------------------

def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU model, logical / usable / physical cores, the vector extensions that matter for int8 and bf16 and the int8
    kernel class they select (admlops.cpu)."""
    cores = set()
    with contextlib.suppress(OSError):
        phys = "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (s.strip() for s in line.partition(":"))
            if key == "physical id":
                phys = value
            elif key == "core id":
                cores.add((phys, value))
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = cpu.cpu_flags()
    return {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
            "physical_cores": len(cores) or None, "cpu_flags": [f for f in cpu.NOTED_FLAGS if f in flags],
            "int8_kernels": cpu.int8_kernels(flags), "platform": platform.platform(),
            "python": platform.python_version()}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in VERSION_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


# ---- inputs ----------------------------------------------------------------------------------------------------

def parse_ints(text: str | Iterable[int], what: str) -> list[int]:
    """``"1,4,8"`` (or a sequence) -> [1, 4, 8]; anything else is a usage error naming ``what``."""
    items = [s for s in text.replace(" ", "").split(",") if s] if isinstance(text, str) else list(text)
    try:
        return [int(v) for v in items]
    except (TypeError, ValueError):
        raise UsageError(f"{what}: expected integers like 1,4,8, got {text!r}") from None


def batch_plan(images: int, batch: int, repeats: int = 1) -> list[list[int]]:
    """Consecutive batches over the images (``repeats`` passes), the last one topped up from the first images, so
    every call holds ``batch`` images and every image is in at least one call."""
    calls = math.ceil(images * repeats / batch)
    return [[(k * batch + j) % images for j in range(batch)] for k in range(calls)]


def latency_stats(seconds: Sequence[float], batch: int) -> dict[str, float]:
    """Per-call latency percentiles (ms) and throughput in images per second (images, not calls)."""
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "per_image_p50_ms": float(np.percentile(ms, 50)) / batch,
            "throughput_ips": float(batch * len(ms) / (ms.sum() / 1000.0))}


# ---- artifacts ---------------------------------------------------------------------------------------------------

def artifact_bytes(artifact_dir: Path) -> int:
    """The artifact's size: every file the backend wrote in its directory, less JSON reports."""
    return sum(p.stat().st_size for p in artifact_dir.rglob("*") if p.is_file() and p.suffix != ".json")


def build_artifacts(pairs: list[tuple[str, str]], export_dir: Path, scratch: Path, calibration: Callable[[], object],
                    settings: dict) -> dict:
    """(backend, precision) -> {"dir", "built_s", "source"}: the export step's ``<backend>-<precision>/``, or one
    built here as export builds it (``settings``: the deploy config's ``build_settings``: input shapes, options)."""
    from admlops.backends import get_backend

    out = {}
    for name, precision in tqdm(pairs, desc="artifacts", unit="artifact"):
        found = export_dir / f"{name}-{precision}"
        if found.is_dir():
            out[name, precision] = {"dir": found, "built_s": None, "source": "export"}
            continue
        target = scratch / f"{name}-{precision}"
        start = time.perf_counter()
        get_backend(name).build(export_dir / "end2end.onnx", target, precision,
                                calibration=calibration() if precision == "int8" else None,
                                shapes=settings.get("input_shapes"), options=settings.get(name, {}))
        out[name, precision] = {"dir": target, "built_s": time.perf_counter() - start, "source": "built"}
    return out


# ---- rows --------------------------------------------------------------------------------------------------------

def run_worker(spec: dict, work: Path, launcher: Sequence[str] = ()) -> tuple[dict, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Run one row in a fresh interpreter (behind ``launcher``, e.g. an emulator: bench/int8_cpu_bench.py);
    re-raises the child's exception when it pickled one."""
    work.mkdir(parents=True)
    (work / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([*launcher, sys.executable, "-m", "admlops.components.benchmark.worker", str(work / "spec.json")])
    if proc.returncode != 0:
        if (work / "error.pickle").is_file():
            raise pickle.loads((work / "error.pickle").read_bytes())
        raise RuntimeError(f"benchmark worker for {spec['label']} exited with {proc.returncode}; its log is above")
    with np.load(work / "detections.npz") as z:
        ids = sorted({int(k.split("_")[1]) for k in z.files})
        detections = {i: (z[f"dets_{i}"], z[f"labels_{i}"]) for i in ids}
    return json.loads((work / "result.json").read_text()), detections


def label(row: dict) -> str:
    """``runtime:precision``, with `` tN`` when N intra-op threads were asked for."""
    return f"{row['runtime']}:{row['precision']}" + (f" t{row['threads']}" if row["threads"] else "")


def sweep(
    dataset_dir: str | Path,
    export_dir: str | Path,
    model_dir: str | Path,
    out: str | Path,
    backends: Sequence[str] | str | None = ("onnxruntime:fp32",),
    batch_sizes: Sequence[int] | None = None,
    threads: Sequence[int] = (0,),
    warmup: int = 5,
    max_images: int = 0,
    repeats: int = 1,
    rounds: int = 1,
    engines_dir: str | Path | None = None,
) -> dict:
    """Benchmark every backend x precision in ``backends`` and PyTorch eager, at each batch size and thread count,
    on the val images of ``dataset_dir`` (convert's output); publishes benchmark.json, benchmark.md and
    report.html at ``out``.

    ``export_dir`` is the export step's output (end2end.onnx, deploy.py, model.py, backend artifacts); the PyTorch
    row is the export's model.py with ``model_dir/model.pth`` (train's output). ``threads`` 0 = each runtime's
    default; ``max_images`` 0 = the whole val split; ``repeats`` passes over the images per batch size; ``rounds``
    times the whole list of rows runs, each row in a fresh process each time, in alternating order (forward, then
    reversed, ...) with the timings pooled: on a shared machine a slow spell then hits every row, not whichever ran
    during it (detections and memory are the first round's, load time the median);
    ``batch_sizes`` None = the task's (2D 1, 4, 8; a 3D export 1); ``backends`` None = the task's default targets;
    ``engines_dir``: export-trt's output, whose failed gates make those TensorRT targets not deployable too."""
    from mmengine.config import Config

    from admlops.backends import build_settings, get_backend, parse_targets, quantized_targets
    from admlops.backends.parity import failed_gates
    from admlops.components.benchmark.report import render_html, render_markdown
    from admlops.mmconfig import use_dataset
    from admlops.mmext.quantized import is_quantized
    from admlops.tasks import task_of

    dataset_dir, export_dir, model_dir = Path(dataset_dir), Path(export_dir), Path(model_dir)
    if backends is not None:
        pairs = parse_targets(backends)  # an unknown name fails before any work
    for path in (*(export_dir / f for f in ("end2end.onnx", "model.py", "deploy.py")), model_dir / "model.pth"):
        if not path.is_file():
            raise InputError(path, "missing: the benchmark needs export's end2end.onnx, model.py and deploy.py and "
                                   "train's model.pth")
    model_cfg, deploy_cfg = (Config.fromfile(str(export_dir / f)) for f in ("model.py", "deploy.py"))
    task = task_of(model_cfg)
    pairs = task.check_targets(pairs if backends is not None else parse_targets(task.targets))
    if is_quantized(model_cfg):  # an int8 model: its targets are int8
        pairs = quantized_targets(pairs, explicit=backends is not None)
    # a target that failed its parity gate is not deployable: it is listed with its gate, not timed
    failed = [g for d in (export_dir, engines_dir) if d for g in failed_gates(d)
              if (g["backend"], g["precision"]) in pairs]
    pairs = [p for p in pairs if p not in {(g["backend"], g["precision"]) for g in failed}]
    batch_sizes = list(dict.fromkeys(parse_ints(batch_sizes or task.batch_sizes, "batch sizes")))
    threads = list(dict.fromkeys(parse_ints(threads, "threads")))
    if not batch_sizes or not threads or min(batch_sizes) < 1 or min(threads) < 0:
        raise UsageError(f"batch sizes must be >= 1 and threads >= 0 (0 = the runtime's default), got "
                         f"batch sizes {batch_sizes}, threads {threads}")
    if warmup < 0 or repeats < 1 or rounds < 1:
        raise UsageError(f"warmup must be >= 0, repeats and rounds >= 1, got {warmup}, {repeats} and {rounds}")
    bench = task.bench_inputs(dataset_dir, export_dir, max_images, batch_sizes)
    n = len(bench.inputs)
    plan = {str(b): batch_plan(n, b, repeats) for b in batch_sizes}

    @functools.cache
    def calibration():  # an int8 target the export did not build: calibrated here as export calibrates it
        use_dataset(model_cfg, dataset_dir)
        return task.calibration_set(dataset_dir, model_cfg, deploy_cfg, CALIBRATION_IMAGES)

    rows = []
    with tempfile.TemporaryDirectory(prefix="admlops-bench-") as scratch:
        scratch = Path(scratch)
        np.save(scratch / "inputs.npy", bench.inputs)
        (scratch / "samples.pkl").write_bytes(pickle.dumps(bench.samples))
        artifacts = build_artifacts(pairs, export_dir, scratch / "artifacts", calibration, build_settings(deploy_cfg))
        runs = [(PYTORCH, "fp32", t) for t in threads] + [(b, p, t) for t in threads for b, p in pairs]
        specs = []
        for runtime, precision, t in runs:
            art = artifacts.get((runtime, precision))
            spec = {"runtime": runtime, "precision": precision, "threads": t,
                    "inputs": str(scratch / "inputs.npy"), "samples": str(scratch / "samples.pkl"),
                    "model_config": str(export_dir / "model.py"), "checkpoint": str(model_dir / "model.pth"),
                    "artifact_dir": str(art["dir"]) if art else None, "warmup": warmup, "plan": plan,
                    "task": task.name}
            specs.append({**spec, "label": label(spec)})
        results: list[list[tuple[dict, dict]]] = [[] for _ in runs]
        order = [(j, k) for j in range(rounds) for k in (range(len(runs)) if j % 2 == 0 else reversed(range(len(runs))))]
        for j, k in tqdm(order, desc="benchmark rows", unit="row"):
            results[k].append(run_worker(specs[k], scratch / f"row{k}-round{j}"))
        for (runtime, precision, t), row_results in zip(runs, results, strict=True):
            art = artifacts.get((runtime, precision))
            result, detections = pool_rounds([r for r, _ in row_results]), row_results[0][1]
            shared = {"runtime": runtime, "precision": precision, "threads": t, "threads_used": result["threads_used"],
                      "device": "cpu" if runtime == PYTORCH else get_backend(runtime).device,
                      "artifact": "model.pth" if runtime == PYTORCH else art["source"],
                      "artifact_bytes": (model_dir / "model.pth").stat().st_size if runtime == PYTORCH
                      else artifact_bytes(art["dir"]), "build_s": art["built_s"] if art else None,
                      "load_s": result["load_s"], "kernels": result["kernels"],
                      "mAP50": bench.accuracy(detections),
                      "boxes": sum(len(d) for d, _ in detections.values())}
            rows += batch_rows(shared, result, plan)
    compare_to_pytorch(rows)
    report = {"machine": machine(), "versions": versions(), "timed": task.timed, "task": task.name,
              "input_unit": task.input_unit, "memory_definition": MEMORY,
              "dataset": str(dataset_dir), "export": str(export_dir), "model": str(model_dir / "model.pth"),
              "images": n, "image_files": [Path(f).name for f in bench.files], "input_shape": bench.shape, "warmup": warmup,
              "repeats": repeats, "rounds": rounds, "batch_sizes": batch_sizes, "threads": threads, "rows": rows,
              "not_deployable": failed}
    report["summary"] = summary(rows)
    with atomic_dir(out) as tmp:
        (tmp / "benchmark.json").write_text(json.dumps(report, indent=2))
        (tmp / "benchmark.md").write_text(render_markdown(report))
        (tmp / "report.html").write_text(render_html(report))
    return report


def pool_rounds(results: list[dict]) -> dict:
    """One worker result from a row's rounds: every round's call timings (and stage timings) pooled per batch size,
    the median load time, the highest peaks; the first round's memory baseline."""
    first = results[0]
    pooled = {**first, "load_s": float(np.median([r["load_s"] for r in results])),
              "process_peak_rss_mib": max(r["process_peak_rss_mib"] for r in results), "batches": {}}
    for key, b in first["batches"].items():
        rounds = [r["batches"][key] for r in results]
        peaks = [r["peak_rss_mib"] for r in rounds]
        pooled["batches"][key] = {"seconds": [s for r in rounds for s in r["seconds"]],
                                  "peak_rss_mib": None if None in peaks else max(peaks)}
        if "stages" in b:
            pooled["batches"][key]["stages"] = {name: [s for r in rounds for s in r["stages"][name]] for name in b["stages"]}
    return pooled


def batch_rows(shared: dict, result: dict, plan: dict[str, list[list[int]]]) -> list[dict]:
    """One row per batch size of a worker's result; ``shared`` holds what its batch sizes have in common."""
    rows = []
    baseline, load_peak = result["baseline_rss_mib"], result["load_peak_rss_mib"]
    for key, r in result["batches"].items():
        b, peak = int(key), r["peak_rss_mib"]
        rows.append({**shared, "batch": b, "calls": len(r["seconds"]), "images": b * len(r["seconds"]),
                     "batches": plan[key], "latency": latency_stats(r["seconds"], b),
                     "timings_ms": [sec * 1000.0 for sec in r["seconds"]],
                     **({"stages": {k: stage_stats(sec) for k, sec in r["stages"].items()}} if "stages" in r else {}),
                     "memory": {"baseline_rss_mib": baseline, "peak_rss_mib": peak,
                                "added_mib": None if peak is None else peak - baseline,
                                "load_added_mib": None if load_peak is None else load_peak - baseline,
                                "process_peak_mib": result["process_peak_rss_mib"]}})
    return rows


def stage_stats(seconds: Sequence[float]) -> dict[str, float]:
    """One stage's per-call mean, p50 and p90 (ms)."""
    return {k: v for k, v in latency_stats(seconds, 1).items() if k in ("mean_ms", "p50_ms", "p90_ms")}


def compare_to_pytorch(rows: list[dict]) -> None:
    """Each row's p50 speed-up over PyTorch eager at the same batch and threads, and its mAP@0.5 difference."""
    ref = {(r["batch"], r["threads"]): r for r in rows if r["runtime"] == PYTORCH}
    for r in rows:
        base = ref[r["batch"], r["threads"]]
        r["speedup_p50"] = base["latency"]["p50_ms"] / r["latency"]["p50_ms"]
        r["mAP50_diff"] = None if r["mAP50"] is None or base["mAP50"] is None else r["mAP50"] - base["mAP50"]


def summary(rows: list[dict]) -> dict:
    """Headline values (KFP metadata): PyTorch and the fastest backend at the smallest batch, first thread count."""
    b, t = min(r["batch"] for r in rows), rows[0]["threads"]
    first = [r for r in rows if r["batch"] == b and r["threads"] == t]
    torch_row = next(r for r in first if r["runtime"] == PYTORCH)
    fast = min((r for r in first if r["runtime"] != PYTORCH), key=lambda r: r["latency"]["p50_ms"], default=torch_row)
    return {"batch": b, "pytorch_p50_ms": round(torch_row["latency"]["p50_ms"], 3),
            "fastest": f"{fast['runtime']}:{fast['precision']}", "fastest_p50_ms": round(fast["latency"]["p50_ms"], 3),
            "fastest_speedup_p50": round(fast["speedup_p50"], 3),
            "fastest_mAP50_diff": None if fast["mAP50_diff"] is None else round(fast["mAP50_diff"], 4)}
