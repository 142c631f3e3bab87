"""One benchmark row in a fresh process: load one model, time it on preprocessed batches, measure what it adds.

    python -m admlops.components.benchmark.worker SPEC.json

SPEC (written by benchmark.py) names the runtime (``pytorch`` or a backend of admlops.backends), its artifact,
the threads, the preprocessed inputs (``inputs.npy``: [N, 3, H, W] float32; for a 3D voxel detector an object array
of N scans' points [n, 4]) and the batch plan: per batch size the list of calls, each a list of image indices.
Every call is timed alone; what is timed is the model call only:

* a backend: ``runner(batch)``, the exported graph (network, box decoding and NMS);
* ``pytorch``: mmdet's ``model.predict(batch, data_samples, rescale=False)`` under ``torch.inference_mode``: the
  forward, box decoding and NMS with the model's test_cfg; the data preprocessor is not run (the tensors are
  already preprocessed, the same ones the backends get);
* a 3D voxel detector (``task`` voxel-detection): voxelization, network and post-processing, each also timed on
  its own (components/export/export3d.py: ``staged``; the loader's predict carries them in ``predict.stages``).

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

# imported before the baseline: a runtime's own import is not memory its inference adds. A backend names its own
# (Backend.runtime_modules); the PyTorch row is not a backend.
PYTORCH_IMPORTS = ("torch", "mmdet.apis", "mmdet.models")
VOXEL_IMPORTS = ("torch", "mmdet3d.models", "mmdet3d.structures")  # every row of a 3D model: voxelizer and head


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


def load_pytorch(spec: dict):
    """mmdet's detector from the export's model config and train's weights; predict = forward + decode + NMS."""
    import torch
    from mmdet.apis import init_detector

    from admlops import compat

    compat.apply()
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    samples = pickle.loads(Path(spec["samples"]).read_bytes())
    model = init_detector(spec["model_config"], spec["checkpoint"], device="cpu")

    def predict(batch: np.ndarray, idx: list[int]):
        with torch.inference_mode():
            return model.predict(torch.from_numpy(batch), [samples[i] for i in idx], rescale=False)

    predict.kernels = lambda: f"ATen {torch.backends.cpu.get_cpu_capability()}"

    def after(out) -> list[tuple[np.ndarray, np.ndarray]]:
        res = []
        for s in out:
            p = s.pred_instances
            res.append((torch.cat([p.bboxes, p.scores[:, None]], 1).numpy(), p.labels.numpy()))
        return res

    return predict, after, torch.get_num_threads()


def load_backend(spec: dict):
    from admlops.backends import get_backend

    runner = get_backend(spec["runtime"]).load(Path(spec["artifact_dir"]), threads=spec["threads"])

    def predict(batch: np.ndarray, idx: list[int]):
        return runner(batch)

    predict.kernels = getattr(runner, "kernels", None)

    def after(out) -> list[tuple[np.ndarray, np.ndarray]]:
        dets, labels = np.asarray(out["dets"]), np.asarray(out["labels"])
        return [(d[d[:, 4] > 0], lab[d[:, 4] > 0]) for d, lab in zip(dets, labels, strict=True)]

    return predict, after, spec["threads"] or None


def loader(spec: dict):
    if spec.get("task") == "voxel-detection":
        from admlops.components.export import export3d

        return export3d.load_pytorch if spec["runtime"] == "pytorch" else export3d.load_backend
    return load_pytorch if spec["runtime"] == "pytorch" else load_backend


def runtime_imports(runtime: str) -> tuple[str, ...]:
    """What ``runtime`` (``pytorch`` or a backend's name) imports before the baseline."""
    if runtime == "pytorch":
        return PYTORCH_IMPORTS
    from admlops.backends import get_backend

    return get_backend(runtime).runtime_modules


def run(spec: dict) -> tuple[dict, dict[int, tuple[np.ndarray, np.ndarray]]]:
    voxel = VOXEL_IMPORTS if spec.get("task") == "voxel-detection" else ()
    for module in runtime_imports(spec["runtime"]) + voxel:
        importlib.import_module(module)
    inputs = np.load(spec["inputs"], allow_pickle=True)  # written by benchmark.py in its own scratch directory
    process_peak = _status_mib("VmHWM")
    baseline = _status_mib("VmRSS")
    exact = reset_peak()
    start = time.perf_counter()
    predict, after, threads_used = loader(spec)(spec)
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
