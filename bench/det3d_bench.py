"""3D detection benchmark: PointPillars (configs/models/pointpillars_kitti_cpu.py) on CPU, side by side in one run:

1. training throughput of the product's train step (``admlops train``) and of mmdet3d's own tools/train.py
   (``mmdet3d/.mim/tools/train.py``) on the same config and data root, one after the other, each in a process of
   its own;
2. inference latency of the model the product trained, exported (``admlops export``: end2end.onnx through
   mmdeploy's VoxelDetection task) under ONNX Runtime, fp32 and int8 (the 3D export's default targets), against
   PyTorch eager on the same val scans (the benchmark sweep of components/benchmark), with voxelization, network
   and post-processing timed apart, and the KITTI AP of each on the whole val split (the export's parity gates).

    .venv/bin/python bench/det3d_bench.py [--work DIR] [--frames 64] [--iters 200] [--ref-iters N] [--threads N]
    .venv/bin/python bench/det3d_bench.py --model RUN/train/model --data-root RUN/infos/dataset  # inference only

The synthetic KITTI data root is cached under --work; both trainings run on every invocation (they are the
measurement). Training throughput is scans per second: the batch size over mmengine's per-iteration ``time``
(data loading + forward + backward + optimizer step, logged every iteration by both sides with the same LoggerHook,
first WARMUP_ITERS iterations left out), and, as a control, iterations x batch over the process's whole wall time
(start-up, dataset build, the final KITTI validation and checkpoint included). mmdet3d's tools/train.py runs under
admlops.compat's shims, without which it cannot run on this stack (numpy 1.26 has no ``np.long`` for its
ObjectSample; KittiMetric's rotated-IoU kernel needs CUDA): the same ones the product's train applies.
Target: ONNX Runtime >= 2x faster than PyTorch eager end to end per scan, with <= 1 KITTI AP point lost.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SPEEDUP, MAX_AP_LOSS = 2.0, 1.0
CONFIG = "pointpillars_kitti_cpu"
WARMUP_ITERS = 5
REFERENCE = """
import runpy, sys
from admlops import compat
compat.apply()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def data_root(work: Path, frames: int) -> Path:
    from admlops.components.infos.kitti import write_kitti_infos
    from admlops.components.synth.kitti import synth_kitti

    kitti, root = work / "kitti", work / "root"
    if not (kitti / "ImageSets" / "val.txt").is_file():
        synth_kitti(kitti, frames=frames, seed=0, val_fraction=0.25)
    if not (root / "kitti_infos_val.pkl").is_file():
        write_kitti_infos(kitti, root)
    return root


def timed(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` (output to ``log``); its wall seconds. A failure prints the log's tail and exits."""
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n" + log.read_text()[-3000:])
    return wall


def throughput(records: list[dict], batch: int, iters: int, wall: float) -> dict:
    times = [r["time"] for r in records if "loss" in r and "time" in r][WARMUP_ITERS:]
    data = [r["data_time"] for r in records if "loss" in r and "data_time" in r][WARMUP_ITERS:]
    mean = statistics.fmean(times)
    return {"iterations_timed": len(times), "iter_s_mean": mean, "iter_s_median": statistics.median(times),
            "data_s_mean": statistics.fmean(data), "scans_per_s": batch / mean, "wall_s": wall,
            "wall_scans_per_s": iters * batch / wall}


def train_both(root: Path, work: Path, iters: int, ref_iters: int, batch: int) -> tuple[Path, dict]:
    """The product's train, then mmdet3d's tools/train.py on the config the product resolved (config.py)."""
    import mmdet3d

    model, ref = work / "model", work / "mmdet3d-train"
    options = ["default_hooks.logger.interval=1"]  # every iteration's time, on both sides
    wall = timed([sys.executable, "-m", "admlops.pipelines.cli", "train", str(root), str(model), "--config", CONFIG,
                  "--max-iters", str(iters), "--batch-size", str(batch), "--cfg-options", *options],
                 work / "train-admlops.log")
    records = json.loads((model / "train_log.json").read_text())
    ours = throughput(records, batch, iters, wall)
    tools_train = Path(mmdet3d.__file__).parent / ".mim" / "tools" / "train.py"
    up = int(ref_iters * 0.4)  # the config's schedule shape, over the reference's iterations
    schedule = [f"train_cfg.max_iters={ref_iters}", f"train_cfg.val_interval={ref_iters}",
                f"param_scheduler.0.T_max={up}", f"param_scheduler.0.end={up}",
                f"param_scheduler.1.T_max={ref_iters - up}", f"param_scheduler.1.begin={up}",
                f"param_scheduler.1.end={ref_iters}", f"param_scheduler.2.T_max={up}", f"param_scheduler.2.end={up}",
                f"param_scheduler.3.T_max={ref_iters - up}", f"param_scheduler.3.begin={up}",
                f"param_scheduler.3.end={ref_iters}"]
    wall = timed([sys.executable, "-c", REFERENCE, str(tools_train), str(model / "config.py"), "--work-dir", str(ref),
                  "--cfg-options", *options, *schedule], work / "train-mmdet3d.log")
    records = [json.loads(line) for log in sorted(ref.glob("*/vis_data/scalars.json"))
               for line in log.read_text().splitlines()]
    return model, {"admlops": ours, "mmdet3d": throughput(records, batch, ref_iters, wall)}


def torch_threads() -> int:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], capture_output=True,
                         text=True, check=True)
    return int(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/admlops-det3d-bench"), help="cache and outputs")
    ap.add_argument("--frames", type=int, default=64, help="synthetic KITTI frames (a quarter of them val)")
    ap.add_argument("--iters", type=int, default=200, help="training iterations of the product's train (the model)")
    ap.add_argument("--ref-iters", type=int, help="iterations of mmdet3d's tools/train.py (default: --iters)")
    ap.add_argument("--batch-size", type=int, default=4, help="scans per training iteration, both sides")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="intra-op threads at inference, ONNX Runtime and PyTorch alike (default: the usable cores)")
    ap.add_argument("--max-scans", type=int, default=0, help="val scans to time (0 = all)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per row first")
    ap.add_argument("--model", type=Path, help="a trained model (train's output) with --data-root: skip the training "
                    "comparison and measure inference only, e.g. on a detection3d run's train and infos outputs")
    ap.add_argument("--data-root", type=Path, help="the mmdet3d KITTI data root --model was trained on")
    args = ap.parse_args()
    if bool(args.model) != bool(args.data_root):
        ap.error("--model and --data-root go together")

    from admlops.components.benchmark.benchmark import sweep
    from admlops.components.export.export import export
    from admlops.mmconfig import kitti_infos

    args.work.mkdir(parents=True, exist_ok=True)
    root = args.data_root or data_root(args.work, args.frames)
    load = [os.getloadavg()[0]]
    if args.model:
        model, train = args.model, None
    else:
        model, train = train_both(root, args.work, args.iters, args.ref_iters or args.iters, args.batch_size)
    load.append(os.getloadavg()[0])
    result = export(root, model, args.work / "export", enforce_gates=False)
    report = sweep(root, args.work / "export", model, args.work / "sweep", backends=None,  # the export's targets
                   threads=[args.threads], warmup=args.warmup, max_images=args.max_scans)
    load.append(os.getloadavg()[0])

    import pickle

    val = len(pickle.loads(kitti_infos(root, "val").read_bytes())["data_list"])
    m = report["machine"]
    print(f"\nCPU {m['cpu']}: {m['logical_cores']} logical / {m['physical_cores']} physical cores, "
          f"{m['usable_cores']} usable; 1-minute load average {', '.join(f'{x:.1f}' for x in load)} "
          "(at the start, after training (if any), after the latency sweep)")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    print(f"data: {val} val frames, mmdet3d data root {root}; model {model}")
    if train:
        print_training(train, args.batch_size)
    print_inference(report, result, args)


def print_training(train: dict, batch: int) -> None:
    print(f"\n== training throughput: {CONFIG}, batch {batch}, same config.py and data root ==")
    print(f"threads/workers: each side one process, torch intra-op threads {torch_threads()} (torch's default here), "
          "1 dataloader worker (the config's train_dataloader.num_workers); run one after the other")
    print(f"timed: batch / mean per-iteration time (mmengine's 'time': data + forward + backward + step), first "
          f"{WARMUP_ITERS} iterations left out; wall = the whole process")
    print(f"{'':22} {'iters':>5} {'s/iter':>7} {'data s':>7} {'scans/s':>8} {'wall s':>7} {'wall scans/s':>12}")
    for name, label in (("admlops", "admlops train"), ("mmdet3d", "mmdet3d tools/train.py")):
        t = train[name]
        print(f"{label:22} {t['iterations_timed'] + WARMUP_ITERS:>5} {t['iter_s_mean']:>7.2f} {t['data_s_mean']:>7.2f} "
              f"{t['scans_per_s']:>8.2f} {t['wall_s']:>7.0f} {t['wall_scans_per_s']:>12.2f}")
    ratio = train["admlops"]["scans_per_s"] / train["mmdet3d"]["scans_per_s"]
    print(f"admlops / mmdet3d scans/s: {ratio:.2f}x")


def print_inference(report: dict, result: dict, args) -> None:
    rows = {f"{r['runtime']}:{r['precision']}": r for r in report["rows"]}
    torch_row = rows.pop("pytorch:fp32")
    print(f"\n== inference latency: {report['images']} val scans ({report['input_shape'][0]}), one scan per call, "
          f"{report['warmup']} warm-up calls ==")
    print(f"threads/workers: one process per row, one call at a time; intra-op threads {args.threads} for ONNX Runtime "
          "and for torch (PyTorch row; voxelization and NMS in every row)")
    print(f"timed: {report['timed']}")
    print(f"{'row':18} {'stage':16} {'mean ms':>8} {'p50 ms':>8} {'p90 ms':>8}")
    for name, row in (("pytorch:fp32", torch_row), *rows.items()):
        for stage, st in row["stages"].items():
            print(f"{name:18} {stage:16} {st['mean_ms']:>8.1f} {st['p50_ms']:>8.1f} {st['p90_ms']:>8.1f}")
        lat = row["latency"]
        print(f"{name:18} {'total':16} {lat['mean_ms']:>8.1f} {lat['p50_ms']:>8.1f} {lat['p90_ms']:>8.1f}")

    report_gates = json.loads((args.work / "export" / "gates.json").read_text())
    gates = {f"{g['backend']}:{g['precision']}": g for g in report_gates["gates"]}
    pt = result["pytorch"]["headline"]
    print("\n== accuracy: KITTI on the whole val split, the export's parity gates (mmengine test loop, KittiMetric) ==")
    print(f"{'metric':24} {'PyTorch':>8} " + " ".join(f"{name:>18}" for name in rows))
    for key in ("mAP_3D_AP40_moderate", "mAP_BEV_AP40_moderate", "Car_3D_AP40_moderate", "Car_BEV_AP40_moderate"):
        cells = []
        for name in rows:
            got = result["backends"][name.replace(":", "-")]["headline"][key]
            cells.append(f"{got:7.2f} ({got - pt[key]:+.2f})")
        print(f"{key:24} {pt[key]:8.2f} " + " ".join(f"{c:>18}" for c in cells))

    print(f"\n== ONNX Runtime vs PyTorch eager, p50 per scan (gated metric {report_gates['metric']}) ==")
    met = []
    for name, row in rows.items():
        network = torch_row["stages"]["network"]["p50_ms"] / row["stages"]["network"]["p50_ms"]
        lost = gates[name]["drop_points"]
        ok = row["speedup_p50"] >= TARGET_SPEEDUP and lost <= MAX_AP_LOSS
        met += [name] if ok else []
        print(f"{name:18} {row['speedup_p50']:.2f}x end to end (network alone {network:.2f}x), {lost:+.2f} AP points "
              f"lost: {'meets' if ok else 'does not meet'} >= {TARGET_SPEEDUP:.0f}x at <= {MAX_AP_LOSS:.0f} point")
    print(f"target: {'met by ' + ', '.join(met) if met else 'NOT met'}")
    print(f"full results: {args.work / 'sweep' / 'benchmark.json'}, {args.work / 'sweep' / 'report.html'}, "
          f"{args.work / 'export' / 'metrics.json'}")


if __name__ == "__main__":
    main()
