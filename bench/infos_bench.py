"""KITTI -> mmdet3d data root: admlops (``write_kitti_infos``) against mmdet3d's own ``tools/create_data.py kitti``
on the same synthetic KITTI set, in one run; then admlops' peak memory as the dataset grows.

    .venv/bin/python bench/infos_bench.py [--frames 7481] [--memory-frames 10000 40000] [--work DIR]

Both sides produce the same outputs (v2 infos for train/val/trainval/test, velodyne_reduced, GT database).
Speed: wall time of each, ratio reference / admlops (target >= 5x on the 2-core machine). Memory: the
10k- and 40k-frame sets reuse the rendered frames under new ids (symlinks), so only the frame count grows;
peak RSS is the converter process plus its largest worker (ratio 40k / 10k, target within 10%). The
synthetic set is cached under --work between runs.
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


def ensure_kitti(root: Path, frames: int) -> Path:
    from admlops.components.synth.kitti import synth_kitti

    if not (root / "ImageSets" / "val.txt").is_file() or len(list((root / "training" / "label_2").glob("*.txt"))) != frames:
        synth_kitti(root, frames=frames, seed=0)
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
    """Run ``cmd``; wall time and the peak of the summed RSS of it and its children (sampled every 50 ms)."""
    start = time.perf_counter()
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe of progress bars would block the child
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors, text=True)
    peak, ps = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if proc.returncode:
        errors.seek(0)
        raise SystemExit(f"{' '.join(cmd)} failed:\n{errors.read()[-3000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak / 2**20, 1)}


def ours(src: Path, out: Path) -> dict:
    code = "import sys; from admlops.components.convert.mmdet3d_infos import write_kitti_infos; write_kitti_infos(sys.argv[1], sys.argv[2])"
    shutil.rmtree(out, ignore_errors=True)
    return run_measured([sys.executable, "-c", code, str(src), str(out)])


def reference(src: Path) -> dict:
    import mmdet3d

    tools = Path(mmdet3d.__file__).parent / ".mim"
    for stale in ("training/velodyne_reduced", "kitti_gt_database"):
        shutil.rmtree(src / stale, ignore_errors=True)
    cmd = [sys.executable, "tools/create_data.py", "kitti", "--root-path", str(src), "--out-dir", str(src), "--extra-tag", "kitti"]
    return run_measured(cmd, cwd=tools, env=dict(os.environ, PYTHONPATH=str(tools)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=7481, help="frames of the speed comparison (KITTI's training set size)")
    ap.add_argument("--memory-frames", type=int, nargs=2, default=(10000, 40000), help="the two sizes of the memory check")
    ap.add_argument("--work", type=Path, default=Path("/tmp/admlops-infos-bench"), help="cache of the synthetic data")
    ap.add_argument("--skip-speed", action="store_true", help="only the memory check")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    kitti = ensure_kitti(args.work / f"kitti-{args.frames}", args.frames)
    results = {"frames": args.frames, "cpus": os.cpu_count()}
    if not args.skip_speed:
        results["admlops"] = ours(kitti, args.work / "out")
        results["reference"] = reference(kitti)
        results["speedup"] = round(results["reference"]["wall_s"] / results["admlops"]["wall_s"], 2)
        print(f"{args.frames} frames: admlops {results['admlops']['wall_s']} s, mmdet3d create_data "
              f"{results['reference']['wall_s']} s -> {results['speedup']}x faster "
              f"(peak RSS {results['admlops']['peak_rss_mb']} vs {results['reference']['peak_rss_mb']} MB)", flush=True)
    small, large = args.memory_frames
    mem = {n: ours(symlink_set(kitti, args.work / f"links-{n}", n), args.work / "out") for n in (small, large)}
    results["memory"] = {str(n): m for n, m in mem.items()}
    results["rss_ratio"] = round(mem[large]["peak_rss_mb"] / mem[small]["peak_rss_mb"], 3)
    print(f"peak RSS: {small} frames {mem[small]['peak_rss_mb']} MB, {large} frames {mem[large]['peak_rss_mb']} MB -> "
          f"ratio {results['rss_ratio']} (wall {mem[small]['wall_s']} s / {mem[large]['wall_s']} s)")
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
