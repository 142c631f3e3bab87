"""KITTI -> mmdet3d data root: admlops (``write_kitti_infos``) against mmdet3d's own ``tools/create_data.py kitti``
on the same synthetic KITTI set, one after the other in one run; then admlops' peak memory as the dataset grows.

    .venv/bin/python bench/infos_bench.py [--frames 1000] [--points 120000] [--memory-frames 10000 40000]
                                          [--work DIR] [--skip-speed] [--skip-memory]

Scans at a real sensor's density: each synthetic scan (a ground plane and points on the boxes, ~7k points) is
padded to ``--points`` with returns of a 64-beam spinning LiDAR 1.73 m above a flat ground walled at 40-80 m
(all around the car, so about a quarter lies in the camera's view, as in KITTI's 120k-point scans); 0 keeps
the synthetic scans. Both sides produce the same outputs (v2 infos for train/val/trainval/test, velodyne_reduced, GT database).
What is timed: one fresh process running the whole conversion, interpreter start and imports included: its
wall time and its CPU time (user + system, summed over it and its worker processes; unlike wall time, not
inflated by other load on the machine). The synthetic set is generated (and cached under --work) before any
clock starts.

Speed, three runs on the same data:
  * admlops, default: ``write_kitti_infos(src, out)``, a parent process plus a pool of ``os.cpu_count()``
    worker processes (2 on the development machine) that read and convert the frames;
  * admlops, one worker: ``write_kitti_infos(src, out, workers=1)``, the parent plus one worker process: the
    frames are converted on one core, the parent collects the results and writes the pickles;
  * mmdet3d ``create_data.py kitti``: one process. Its first step gathers labels, calibration and image
    shapes on a pool of 8 threads (``get_kitti_image_info``'s default ``num_worker``; create_data's ``--workers``
    does not reach the KITTI path); the point counts, reduced scans, v2 update and GT database run on one thread.
Reported: each wall and CPU time, and the wall-time ratio reference / admlops for both admlops runs (the
one-worker ratio is the part of the speed-up that does not come from using more cores).

Shards: the pipelines' sharded path, every shard a fresh process with one worker (a pod each), one after the
other, then the merge, against one pod (``write_kitti_infos`` with one worker) on the same data: ``--shard-frames``
frames (4,000 by default, links to the rendered frames: sharding is for sets larger than one pod converts in
seconds). Printed: the merge step's wall time against one pod's (the merge overhead, target <= 10%) and the whole
sharded run's (shards + merge; each shard also pays its own process start). The two are run alternately twice and
the best of each compared.

Memory: the peak of the summed RSS of the process and all its children (sampled every 50 ms), for every run.
The 10k- and 40k-frame sets reuse the rendered frames under new ids (symlinks), so only the frame count
grows; they run with the default workers, and the ratio 40k / 10k of their peak summed RSS is the target
(within 10%).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SUBDIRS = {"image_2": "png", "label_2": "txt", "calib": "txt", "velodyne": "bin"}


def ensure_kitti(root: Path, frames: int, points: int = 0) -> Path:
    import numpy as np

    from admlops.components.synth.kitti import synth_kitti
    from admlops.components.synth.recording import beam_returns

    if not (root / "ImageSets" / "val.txt").is_file() or len(list((root / "training" / "label_2").glob("*.txt"))) != frames:
        synth_kitti(root, frames=frames, seed=0)
        for i, scan in enumerate(sorted((root / "training" / "velodyne").glob("*.bin"))):
            pts = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
            if points > len(pts):
                np.concatenate([pts, beam_returns(np.random.default_rng([0, i]), points - len(pts))]).tofile(scan)
    if not (root / "ImageSets" / "test.txt").is_file():  # the reference also converts a test split and needs one frame
        for sub, ext in SUBDIRS.items():
            if sub != "label_2":
                (root / "testing" / sub).mkdir(parents=True, exist_ok=True)
                shutil.copy(root / "training" / sub / f"000000.{ext}", root / "testing" / sub / f"000000.{ext}")
        (root / "ImageSets" / "test.txt").write_text("000000\n")
    return root


def symlink_set(pool: Path, out: Path, frames: int) -> Path:
    """A KITTI set of ``frames`` ids whose files are links to the pool's frames (i -> i mod pool size)."""
    if (out / "ImageSets" / "val.txt").is_file():
        return out
    ids = sorted(p.stem for p in (pool / "training" / "label_2").glob("*.txt"))
    val = set((pool / "ImageSets" / "val.txt").read_text().split())
    for sub in SUBDIRS:
        (out / "training" / sub).mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "val": []}
    for i in range(frames):
        src = ids[i % len(ids)]
        for sub, ext in SUBDIRS.items():
            os.symlink(pool / "training" / sub / f"{src}.{ext}", out / "training" / sub / f"{i:06d}.{ext}")
        splits["val" if src in val else "train"].append(f"{i:06d}")
    (out / "ImageSets").mkdir()
    for name, members in splits.items():
        (out / "ImageSets" / f"{name}.txt").write_text("".join(f"{m}\n" for m in members))
    return out


def run_measured(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> dict:
    """Run ``cmd``; its wall time, its CPU time (user + system of it and every descendant it waited for, e.g. a
    pool's workers: the figure that machine load does not inflate) and the peak of the summed RSS of it and its
    children (sampled every 50 ms)."""
    os.sync()  # the previous run's written files reach the disk first, not during this run's clock
    start = time.perf_counter()
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe of progress bars would block the child
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors, text=True)
    peak, ps = 0, psutil.Process(proc.pid)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaps it ourselves, to read its resource usage
        if pid:
            break
        try:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        errors.seek(0)
        raise SystemExit(f"{' '.join(cmd)} failed:\n{errors.read()[-3000:]}")
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mb": round(peak / 2**20, 1)}


def fresh(runs: Path, name: str) -> Path:
    """A new directory under ``runs`` for one run's outputs. Outputs are never written where others were just
    deleted: a file created just after thousands were deleted costs ext4 a scan of the recently freed inodes
    (measured: a fifth of a run), which a pod writing its first output never pays; ``runs`` goes after every timing."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=runs))


def ours(src: Path, runs: Path, workers: int | None = None) -> dict:
    """``write_kitti_infos`` in a fresh process with ``workers`` pool processes (None: os.cpu_count())."""
    code = ("import sys; from admlops.components.infos.kitti import write_kitti_infos; "
            "write_kitti_infos(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]) or None)")
    out = fresh(runs, "admlops") / "out"
    result = run_measured([sys.executable, "-c", code, str(src), str(out), str(workers or 0)])
    return {**result, "worker_processes": workers or os.cpu_count()}


SHARD = ("import sys; from admlops.components.infos.kitti import write_kitti_shard; "
         "write_kitti_shard(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), workers=1)")
MERGE = ("import sys; from admlops.components.infos.kitti import merge_kitti_shards; "
         "merge_kitti_shards(sys.argv[1], sys.argv[3:], sys.argv[2])")


def sharded(src: Path, runs: Path, shards: int) -> dict:
    """The pipeline's sharded path on one machine: each shard in its own fresh process with one worker (as one pod
    each), one after the other, then the merge; wall and CPU time of each, summed."""
    work = fresh(runs, "sharded")
    parts = [work / f"shard-{k}" for k in range(shards)]
    timed = [run_measured([sys.executable, "-c", SHARD, str(src), str(part), str(k), str(shards)])
             for k, part in enumerate(parts)]
    merge = run_measured([sys.executable, "-c", MERGE, str(src), str(work / "merged"), *map(str, parts)])
    return {"shards": timed, "merge": merge, "wall_s": round(sum(r["wall_s"] for r in timed) + merge["wall_s"], 1),
            "cpu_s": round(sum(r["cpu_s"] for r in timed) + merge["cpu_s"], 1)}


def reference(src: Path, runs: Path) -> dict:
    """mmdet3d's create_data in a fresh data root whose inputs are links to ``src``'s folders (it writes its
    outputs into the root it reads)."""
    import mmdet3d

    tools = Path(mmdet3d.__file__).parent / ".mim"
    root = fresh(runs, "reference")
    os.symlink(src / "ImageSets", root / "ImageSets")
    for split in ("training", "testing"):
        for sub in SUBDIRS:
            if (src / split / sub).is_dir():
                (root / split).mkdir(exist_ok=True)
                os.symlink(src / split / sub, root / split / sub)
    cmd = [sys.executable, "tools/create_data.py", "kitti", "--root-path", str(root), "--out-dir", str(root), "--extra-tag", "kitti"]
    return {**run_measured(cmd, cwd=tools, env=dict(os.environ, PYTHONPATH=str(tools))), "worker_processes": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000, help="frames of the speed comparison")
    ap.add_argument("--points", type=int, default=120_000, help="points per scan (KITTI's density; 0: as synthesised)")
    ap.add_argument("--memory-frames", type=int, nargs=2, default=(10000, 40000), help="the two sizes of the memory check")
    ap.add_argument("--work", type=Path, default=Path("/tmp/admlops-infos-bench"), help="cache of the synthetic data")
    ap.add_argument("--skip-speed", action="store_true", help="only the memory check")
    ap.add_argument("--skip-memory", action="store_true", help="only the speed comparison")
    ap.add_argument("--shards", type=int, default=4, help="the sharded run's shards (1: no sharded run)")
    ap.add_argument("--shard-frames", type=int, default=4000,
                    help="frames of the sharded comparison (links to the rendered frames, as the memory check's)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    kitti = ensure_kitti(args.work / f"kitti-{args.frames}-{args.points}", args.frames, args.points)
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=args.work))
    results = {"frames": args.frames, "points": args.points, "cpus": os.cpu_count(),
               "timed": "one fresh process doing the whole conversion: wall time, CPU time (user + system of it and its "
                        "workers), peak RSS summed over it and its children"}
    if not args.skip_speed:
        results["admlops"] = ours(kitti, runs)
        results["admlops_one_worker"] = ours(kitti, runs, workers=1)
        results["reference"] = reference(kitti, runs)
        ref = results["reference"]
        for key, label in (("admlops", f"{results['admlops']['worker_processes']} workers (default)"),
                           ("admlops_one_worker", "1 worker")):
            results[f"speedup_{key}"] = round(ref["wall_s"] / results[key]["wall_s"], 2)
            print(f"{args.frames} frames: admlops, {label}, {results[key]['wall_s']} s (CPU {results[key]['cpu_s']} s); "
                  f"mmdet3d create_data (one process) {ref['wall_s']} s (CPU {ref['cpu_s']} s) -> "
                  f"{results[f'speedup_{key}']}x faster in wall time (peak summed RSS {results[key]['peak_rss_mb']} vs "
                  f"{ref['peak_rss_mb']} MB)", flush=True)
    if args.shards > 1:  # the sharded run's overhead against one pod, same data, one worker each: alternated
        data = kitti if args.shard_frames == args.frames else symlink_set(kitti, args.work / f"links-{args.shard_frames}", args.shard_frames)
        pairs = [(ours(data, runs, workers=1), sharded(data, runs, args.shards)) for _ in range(2)]
        one = min((p[0] for p in pairs), key=lambda r: r["wall_s"])  # the best of two each: noise only adds
        split = min((p[1] for p in pairs), key=lambda r: r["wall_s"])
        results["sharded"], results["one_pod"] = split, one
        results["shard_overhead"] = round(split["wall_s"] / one["wall_s"] - 1, 3)
        results["merge_share"] = round(split["merge"]["wall_s"] / one["wall_s"], 3)
        print(f"{args.shard_frames} frames, {args.shards} shards one after the other (one worker each) + merge: "
              f"{split['wall_s']} s against one pod with one worker {one['wall_s']} s: the merge step "
              f"{split['merge']['wall_s']} s = {results['merge_share']:.1%} of one pod, the whole sharded run "
              f"{results['shard_overhead']:+.1%} (each shard's process start and split reading included; target for "
              "the merge overhead <= 10%)", flush=True)
    if not args.skip_memory:
        small, large = args.memory_frames
        mem = {n: ours(symlink_set(kitti, args.work / f"links-{n}", n), runs) for n in (small, large)}
        results["memory"] = {str(n): m for n, m in mem.items()}
        results["rss_ratio"] = round(mem[large]["peak_rss_mb"] / mem[small]["peak_rss_mb"], 3)
        print(f"peak summed RSS, {mem[small]['worker_processes']} workers: {small} frames {mem[small]['peak_rss_mb']} MB, "
              f"{large} frames {mem[large]['peak_rss_mb']} MB -> ratio {results['rss_ratio']} "
              f"(wall {mem[small]['wall_s']} s / {mem[large]['wall_s']} s)")
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(runs)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
