"""Int8 accuracy by CPU kind: the same trained detector quantized for VNNI/AMX kernels (full 8-bit weights) and for
CPUs without VNNI (the overflow fix: 7-bit weights), each run on this CPU and on an emulated AVX2-only CPU, its
mAP@0.5 against PyTorch's on the same val images, side by side in one run.

    .venv/bin/python bench/int8_cpu_bench.py --dataset DIR --model DIR --export DIR [--images N] [--emulate Haswell]
    .venv/bin/python bench/int8_cpu_bench.py --work DIR [--frames 240 --iters 200]   # the test suite's demo size

Without --dataset/--model/--export it builds the inputs under --work as bench/deploy_bench.py does (synthetic KITTI,
RTMDet-tiny, export). Int8 targets: OpenVINO (NNCF, overflow fix ENABLE vs DISABLE) and ONNX Runtime (QDQ,
``reduce_range`` on vs off), calibrated on the same 32 train images. Every row runs in the benchmark's worker
process (components/benchmark/worker.py) on the same preprocessed val images; the emulated rows run that worker
under ``qemu-x86_64 -cpu <model>`` (Debian's qemu-user: ``apt-get install qemu-user``), whose CPUID reports the
emulated CPU, so the runtimes dispatch the kernels that CPU has (for Haswell: AVX2, no AVX-512, no VNNI: the
saturating 16-bit u8 x s8 path). Emulation is slow (minutes per row): keep --images small. mAP@0.5 of every row is
computed here, natively, by the benchmark's one evaluation (pycocotools). The OpenVINO rows print the convolution
kernels the CPU plugin chose, which shows that the emulated CPU really ran other kernels.
"""
from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_bench import demo_inputs  # noqa: E402

BUILDS = (("vnni", "avx512_vnni"), ("no-vnni (overflow fix)", "avx2"))  # (label, the int8_cpu setting built for)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/admlops-int8-cpu-bench"), help="cache for built inputs")
    p.add_argument("--frames", type=int, default=240, help="synthetic frames when building the inputs")
    p.add_argument("--iters", type=int, default=200, help="training iterations when building the inputs")
    p.add_argument("--dataset", type=Path, help="a converted dataset (convert's output)")
    p.add_argument("--model", type=Path, help="train's output (model.pth, config.py)")
    p.add_argument("--export", type=Path, help="export's output (end2end.onnx, model.py, deploy.py)")
    p.add_argument("--images", type=int, default=24, help="val images every row runs on (0: all)")
    p.add_argument("--emulate", default="Haswell", help="qemu CPU model for the emulated rows ('' to skip them)")
    p.add_argument("--backends", default="openvino,onnxruntime", help="int8 backends to compare")
    args = p.parse_args()

    from mmengine.config import Config

    from admlops.backends import build_settings, get_backend
    from admlops.backends.calibration import CALIBRATION_IMAGES
    from admlops.components.benchmark.benchmark import PYTORCH, batch_plan, machine, run_worker
    from admlops.mmconfig import use_dataset
    from admlops.tasks import get_task

    if args.dataset and args.model and args.export:
        dataset, model, export = args.dataset, args.model, args.export
    else:
        dataset, model, export = demo_inputs(args.work, args.frames, args.iters, ["onnxruntime:fp32"])
    qemu = shutil.which("qemu-x86_64")
    if args.emulate and not qemu:
        print("qemu-x86_64 not found (apt-get install qemu-user): the emulated rows are skipped")
    launchers = [("this CPU (" + machine()["int8_kernels"] + " kernels)", [])]
    if args.emulate and qemu:
        launchers.append((f"emulated {args.emulate}", [qemu, "-cpu", args.emulate]))

    task = get_task("image-detection")
    bench = task.bench_inputs(Path(dataset), Path(export), args.images, [1])
    inputs = bench.inputs
    model_cfg = Config.fromfile(str(export / "model.py"))
    use_dataset(model_cfg, dataset)
    deploy_cfg = Config.fromfile(str(export / "deploy.py"))
    calibration = task.calibration_set(dataset, model_cfg, deploy_cfg, CALIBRATION_IMAGES)
    shapes = build_settings(deploy_cfg)["input_shapes"]

    with tempfile.TemporaryDirectory(prefix="admlops-int8-cpu-") as scratch:
        scratch = Path(scratch)
        import numpy as np

        np.save(scratch / "inputs.npy", inputs)
        (scratch / "samples.pkl").write_bytes(pickle.dumps(bench.samples))
        plan = {"1": batch_plan(len(inputs), 1)}

        def row(runtime: str, artifact: Path | None, launcher: list[str], name: str) -> tuple[float, str]:
            spec = {"runtime": runtime, "precision": "fp32" if runtime == PYTORCH else "int8", "threads": 0,
                    "inputs": str(scratch / "inputs.npy"), "samples": str(scratch / "samples.pkl"),
                    "model_config": str(export / "model.py"), "checkpoint": str(model / "model.pth"),
                    "artifact_dir": str(artifact) if artifact else None, "warmup": 0, "plan": plan,
                    "task": task.name, "label": name}
            result, detections = run_worker(spec, scratch / name, launcher)
            return bench.accuracy(detections), result["kernels"] or "-"

        reference, _ = row(PYTORCH, None, [], "pytorch")
        print(f"PyTorch fp32 mAP@0.5 on {len(inputs)} val images: {reference:.4f}")
        table = []
        for backend in args.backends.split(","):
            for build_label, target in BUILDS:
                artifact = scratch / f"{backend}-{target}"
                get_backend(backend).build(export / "end2end.onnx", artifact, "int8", calibration, shapes,
                                           options={"int8_cpu": target})
                for where, launcher in launchers:
                    name = f"{backend}-{target}-{'emulated' if launcher else 'native'}"
                    got, kernels = row(backend, artifact, launcher, name)
                    table.append((backend, build_label, where, got, 100 * (reference - got), kernels))
                    print(f"  {backend} int8 built for {build_label}, run on {where}: mAP@0.5 {got:.4f}, drop "
                          f"{100 * (reference - got):+.2f} points; kernels: {kernels}", flush=True)
    print("\n| backend | int8 built for | run on | mAP@0.5 | drop vs PyTorch (points) | kernels |\n|" + " --- |" * 6)
    for backend, build, where, got, drop, kernels in table:
        print(f"| {backend} | {build} | {where} | {got:.4f} | {drop:+.2f} | {kernels} |")
    print(f"\nPyTorch fp32 mAP@0.5 {reference:.4f} on {len(inputs)} val images; machine: {json.dumps(machine())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
