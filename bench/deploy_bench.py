"""Deploy benchmark: every CPU backend and precision of admlops.backends against PyTorch eager on the demo model,
side by side in one run (the benchmark sweep of components/benchmark).

    .venv/bin/python bench/deploy_bench.py [--work DIR] [--threads N] [--batch-sizes 1 4 8] [--max-images N]
    .venv/bin/python bench/deploy_bench.py --dataset DIR --model DIR --export DIR   # reuse a run's outputs

Without --dataset/--model/--export it builds the demo's inputs, cached under --work: 400 synthetic KITTI frames,
converted (80 val images), RTMDet-tiny trained 300 iterations, exported with mmdeploy (end2end.onnx with NMS).

Printed per backend x precision and batch size: p50 latency per call of the backend and of PyTorch eager
measured in the same run on the same preprocessed images and calls, their ratio, throughput, and the mAP@0.5 of
each on those images through one evaluation (pycocotools, boxes mapped back to the original image), with the
difference in points. Target: the best CPU backend >= 4x faster than PyTorch eager at batch 1 with <= 1 mAP
point lost.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

TARGET_SPEEDUP, MAX_MAP_LOSS = 4.0, 0.01


def demo_inputs(work: Path, frames: int, iters: int, targets: list[str]) -> tuple[Path, Path, Path]:
    """The demo's dataset, model and export (every target built and gated, gates reported, not enforced)."""
    from admlops.components.convert.to_coco import kitti_to_coco
    from admlops.components.export.export import export
    from admlops.components.synth.kitti import synth_kitti
    from admlops.components.train.train import train

    kitti, coco, model, onnx = work / "kitti", work / "coco", work / "model", work / "export"
    if not (kitti / "ImageSets" / "val.txt").is_file():
        synth_kitti(kitti, frames=frames, seed=0)
    if not (coco / "summary.json").is_file():
        kitti_to_coco(kitti, coco)
    if not (model / "model.pth").is_file():
        train(coco, model, max_iters=iters)
    if not (onnx / "end2end.onnx").is_file():
        export(coco, model, onnx, targets=",".join(targets), enforce_gates=False)
    return coco, model, onnx


def cpu_targets() -> list[str]:
    """``backend:precision`` of every CPU backend whose runtime is installed here (the others named as skipped)."""
    from admlops.backends import BACKENDS, get_backend

    targets = []
    for name in BACKENDS.names():
        backend = get_backend(name)
        if backend.device != "cpu":
            print(f"skipped {name}: not a CPU backend")
        elif importlib.util.find_spec(name) is None:
            print(f"skipped {name}: its runtime package is not installed")
        else:
            targets += [f"{name}:{p}" for p in backend.precisions]
    return targets


def export_gates(export_dir: Path) -> dict[tuple[str, str], float]:
    """(backend, precision) -> the export step's parity-gate mAP@0.5 drop in points (gates.json), where it exists."""
    path = export_dir / "gates.json"
    gates = json.loads(path.read_text())["gates"] if path.is_file() else []
    return {(g["backend"], g["precision"]): g["drop_points"] for g in gates}


def print_report(report: dict) -> None:
    from admlops.components.benchmark.benchmark import label

    m, rows = report["machine"], report["rows"]
    torch_rows = {(r["batch"], r["threads"]): r for r in rows if r["runtime"] == "pytorch"}
    gates = export_gates(Path(report["export"]))
    print(f"\nCPU {m['cpu']}: {m['logical_cores']} logical / {m['physical_cores']} physical cores, {m['usable_cores']} usable; "
          f"flags {', '.join(m['cpu_flags'])}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    print(f"images: {report['images']} val images {report['input_shape']}, every row the same calls; "
          f"{report['warmup']} warm-up calls per batch size")
    print(f"rounds: {report['rounds']} (every row in a fresh process per round, alternating order, timings pooled)")
    print("workers/threads: one process per row, one call at a time (1 worker on each side); intra-op threads: " +
          "; ".join(sorted({f"{r['runtime']} {r['threads_used'] or 'runtime default'}" for r in rows})))
    print(f"timed: {report['timed']}")
    print(f"memory: {report['memory_definition']}")
    print("mAP@0.5: each row's detections on these images through one pycocotools evaluation; 'gate' = the export "
          "step's parity gate (gates.json: mmdeploy's evaluation on the whole val split), drop in points\n")
    head = (f"{'backend:precision threads':26} {'batch':>5} {'p50 ms':>8} {'PyTorch p50':>11} {'ratio':>6} {'img/s':>7} "
            f"{'PyTorch img/s':>13} {'mAP@0.5':>8} {'vs PyTorch':>10} {'gate drop':>9} {'added MiB':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        t = torch_rows[r["batch"], r["threads"]]
        diff = "-" if r["mAP50_diff"] is None else f"{100 * r['mAP50_diff']:+.1f} pt"
        gate = gates.get((r["runtime"], r["precision"]))
        added = "-" if r["memory"]["added_mib"] is None else f"{r['memory']['added_mib']:.0f}"
        print(f"{label(r):26} {r['batch']:>5} {r['latency']['p50_ms']:>8.1f} {t['latency']['p50_ms']:>11.1f} "
              f"{r['speedup_p50']:>5.2f}x {r['latency']['throughput_ips']:>7.1f} {t['latency']['throughput_ips']:>13.1f} "
              f"{r['mAP50'] or 0:>8.3f} {diff:>10} {'-' if gate is None else f'{gate:+.2f}':>9} {added:>9}")
    b1 = min(r["batch"] for r in rows)
    for threads in dict.fromkeys(r["threads"] for r in rows):  # one verdict per thread count: never across them
        ok = [r for r in rows if r["runtime"] != "pytorch" and r["batch"] == b1 and r["threads"] == threads
              and r["mAP50_diff"] is not None and r["mAP50_diff"] >= -MAX_MAP_LOSS]
        if not ok:
            print(f"\nthreads {threads}: no backend within {100 * MAX_MAP_LOSS:.0f} mAP point of PyTorch on these images")
            continue
        best = max(ok, key=lambda r: r["speedup_p50"])
        verdict = "met" if best["speedup_p50"] >= TARGET_SPEEDUP else "NOT met"
        print(f"\nthreads {threads}: best CPU backend within {100 * MAX_MAP_LOSS:.0f} mAP point at batch {b1}: {label(best)}, "
              f"{best['speedup_p50']:.2f}x PyTorch eager (p50 {best['latency']['p50_ms']:.1f} vs "
              f"{torch_rows[b1, threads]['latency']['p50_ms']:.1f} ms), mAP@0.5 {100 * best['mAP50_diff']:+.1f} pt: "
              f"target >= {TARGET_SPEEDUP:.0f}x {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/admlops-deploy-bench"),
                    help="cache of the demo inputs, and the output")
    ap.add_argument("--frames", type=int, default=400, help="synthetic KITTI frames (the demo's)")
    ap.add_argument("--iters", type=int, default=300, help="training iterations (the demo's)")
    ap.add_argument("--dataset", type=Path, help="convert's output (instead of building the demo's)")
    ap.add_argument("--model", type=Path, help="train's output: model.pth")
    ap.add_argument("--export", type=Path, help="export's output: end2end.onnx, model.py, deploy.py, artifacts")
    ap.add_argument("--backends", nargs="*", help="backend:precision pairs (default: every CPU backend, every precision)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[len(os.sched_getaffinity(0))],
                    help="intra-op threads of every runtime, PyTorch included, each value a set of rows "
                         "(default: the usable cores)")
    ap.add_argument("--max-images", type=int, default=0, help="0 = every val image")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1, help="passes over the images per batch size")
    ap.add_argument("--rounds", type=int, default=3,
                    help="the rows run this many times in alternating order, timings pooled (this machine is shared)")
    args = ap.parse_args()

    from admlops.components.benchmark.benchmark import sweep

    backends = args.backends if args.backends is not None else cpu_targets()
    if args.dataset and args.model and args.export:
        dataset, model, onnx = args.dataset, args.model, args.export
    else:
        dataset, model, onnx = demo_inputs(args.work, args.frames, args.iters, backends)
    out = args.work / "sweep"
    report = sweep(dataset, onnx, model, out, backends=backends, batch_sizes=args.batch_sizes, threads=args.threads,
                   warmup=args.warmup, max_images=args.max_images, repeats=args.repeats, rounds=args.rounds)
    print_report(report)
    print(f"\nfull results: {out / 'benchmark.json'}, {out / 'benchmark.md'}, {out / 'report.html'}")
    print(json.dumps(report["summary"]))


if __name__ == "__main__":
    main()
