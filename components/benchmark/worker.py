"""One benchmark row in a fresh process: load one model, time it on preprocessed batches, measure what it adds.

    python -m admlops.components.benchmark.worker SPEC.json

SPEC (written by benchmark.py) names the model's task (admlops.tasks), the runtime (``pytorch`` or a backend of
admlops.backends), its artifact, the threads, the inputs the task built (``inputs.npy``: [N, 3, H, W] float32 for a
2D detector; for a 3D voxel detector an object array of N scans' points [n, 4]) and the batch plan: per batch size
the list of calls, each a list of input indices. The task loads the row's model (``load_pytorch``,
``load_backend``: its module says what one call runs). Every call is timed alone; what is timed is the model call
only, and where the task's predict has stages (a 3D voxel detector: voxelization, network, post-processing) each is
also timed on its own (``predict.stages``).

Memory: ``baseline`` is the RSS after the runtime's Python package is imported and the inputs are loaded, just
before the model is loaded; the kernel's RSS high-water mark (VmHWM) is then reset (``/proc/self/clear_refs``)
before the load and before each batch size, and read after, so ``added = peak - baseline`` is what loading the
model and running it at that batch size adds. ``process_peak`` is the process's lifetime high-water mark
(imports included): recorded as the control it is not.

Writes ``result.json`` and ``detections.npz`` (the first pass over the images: dets [k, 5] in input
coordinates and labels [k] per image) beside SPEC; on an error, ``error.pickle`` (the exception) before exiting 1.
"""
from __future__ import annotations

import importlib
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

# Imported before the baseline: a runtime's own import is not memory its inference adds. A backend names its own
# (Backend.runtime_modules); the task what every row of its models imports (Task.worker_imports) and what its
# PyTorch row does (Task.pytorch_imports).


def _status_mib(field: str) -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return None


def reset_peak() -> bool:
    """Reset this process's RSS high-water mark to its current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def runtime_imports(spec: dict) -> tuple[str, ...]:
    """What a row imports before the baseline: its task's modules and the PyTorch row's or the backend's own."""
    from admlops.backends import get_backend
    from admlops.tasks import get_task

    task = get_task(spec["task"])
    own = task.pytorch_imports if spec["runtime"] == "pytorch" else get_backend(spec["runtime"]).runtime_modules
    return task.worker_imports + own


def run(spec: dict) -> tuple[dict, dict[int, tuple[np.ndarray, np.ndarray]]]:
    from admlops.tasks import get_task

    for module in runtime_imports(spec):
        importlib.import_module(module)
    inputs = np.load(spec["inputs"], allow_pickle=True)  # written by benchmark.py in its own scratch directory
    process_peak = _status_mib("VmHWM")
    baseline = _status_mib("VmRSS")
    exact = reset_peak()
    start = time.perf_counter()
    task = get_task(spec["task"])
    predict, after, threads_used = (task.load_pytorch if spec["runtime"] == "pytorch" else task.load_backend)(spec)
    stages = getattr(predict, "stages", None)  # per-stage seconds of every call, where the model has stages
    kernels = getattr(predict, "kernels", None)  # what the runtime says (or its CPU flags select) it ran
    load_s = time.perf_counter() - start
    load_peak = _status_mib("VmHWM")
    detections: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    batches = {}
    for batch, plan in spec["plan"].items():
        reset_peak()
        for k in range(spec["warmup"]):
            idx = plan[k % len(plan)]
            predict(inputs[idx], idx)
        for times in (stages or {}).values():
            times.clear()
        seconds = []
        for idx in tqdm(plan, desc=f"{spec['label']} batch {batch}", unit="call", leave=False):
            x = inputs[idx]  # a copy, made before the clock starts
            t = time.perf_counter()
            out = predict(x, idx)
            seconds.append(time.perf_counter() - t)
            if len(detections) < len(inputs):
                for i, det in zip(idx, after(out), strict=True):
                    detections.setdefault(i, det)
        peak = _status_mib("VmHWM")
        batches[batch] = {"seconds": seconds, "peak_rss_mib": peak if exact else None}
        if stages:
            batches[batch]["stages"] = {name: list(times) for name, times in stages.items()}
    process_peak = max(process_peak, load_peak, *(b["peak_rss_mib"] or 0 for b in batches.values()))
    result = {"load_s": load_s, "threads_used": threads_used, "baseline_rss_mib": baseline,
              "load_peak_rss_mib": load_peak if exact else None, "process_peak_rss_mib": process_peak,
              "memory_exact": exact, "batches": batches, "kernels": kernels() if kernels else None}
    return result, detections


def main(spec_path: str) -> int:
    spec_path = Path(spec_path)
    spec = json.loads(spec_path.read_text())
    try:
        result, detections = run(spec)
    except Exception as exc:
        try:
            (spec_path.parent / "error.pickle").write_bytes(pickle.dumps(exc))
        except Exception:  # an exception that does not pickle: the parent reports the exit status and the log
            pass
        raise
    arrays = {f"{kind}_{i}": d[n] for i, d in detections.items() for n, kind in enumerate(("dets", "labels"))}
    np.savez(spec_path.parent / "detections.npz", **arrays)
    (spec_path.parent / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
