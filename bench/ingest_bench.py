"""Ingest throughput: ``admlops data ingest`` (read, pair, measure, write; then screen and publish) on synthetic
recordings at a real sensor's density, against the recording's own rate (10 Hz LiDAR).

    .venv/bin/python bench/ingest_bench.py [--frames 300] [--points 120000] [--work DIR]

Recordings (written once with the generator, cached under --work, before any clock starts): MCAP storage,
``--frames`` LiDAR scans padded to ``--points`` points each (xyzi, 16 bytes a point: 1.9 MB a scan at 120k), and
either one front camera or six around the ego (JPEG CompressedImage, 1242x375). What is timed, each in one fresh process
(interpreter start and imports included), wall and CPU time: ingest alone (read, pair, measure, write the frames),
and the whole ``admlops data ingest`` command (ingest, screen, the push of the version to a local store, which
copies every scan into the store's objects). Ingest is one process, one thread of its own (numpy's and libjpeg's calls on it): "one
worker". Reported: frames per second and that rate against the recording's 10 Hz (target >= 5x), per rig.
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

RECORDING_HZ = 10.0
INGEST = ("import json, sys; from admlops.components.ingest.ingest import ingest; "
          "print(json.dumps(ingest(sys.argv[1], sys.argv[2], sys.argv[3])))")
TARGET = 5.0


def timed(cmd: list[str]) -> dict:
    os.sync()  # the previous run's written files reach the disk first, not during this run's clock
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "summary": json.loads(out)}


def main() -> None:
    from admlops.components.synth.recording import default_topics, synth_recording

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--points", type=int, default=120_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/admlops-ingest-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    # Outputs go to fresh directories, removed only after every timing: files created just after thousands were
    # deleted cost ext4 a scan of the recently freed inodes each (measured: a fifth of the run), which a pod
    # writing its first output never pays.
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=args.work))
    rows = {}
    for cameras in (1, 6):
        bag = args.work / f"drive-{cameras}cam-{args.frames}-{args.points}"
        if not bag.exists():
            synth_recording(bag, frames=args.frames, cameras=cameras, points=args.points, seed=0)
        definition = args.work / f"definition-{cameras}.yaml"
        import yaml

        raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "configs/datasets/road-3class.yaml").read_text())
        raw["recording"] = {**default_topics(cameras), "screening": {}}
        definition.write_text(yaml.safe_dump(raw))
        run = runs / f"{cameras}cam"
        out, store, frames = run / "out", run / "store", run / "frames"
        size = sum(p.stat().st_size for p in bag.rglob("*") if p.is_file())
        alone = timed([sys.executable, "-c", INGEST, str(bag), str(definition), str(frames)])
        whole = timed([sys.executable, "-m", "admlops.pipelines.cli", "data", "ingest", str(bag), str(out),
                       "--definition", str(definition), "--store", str(store)])
        rows[cameras] = {"bytes": size, "ingest": alone, "command": whole}
        for what, r in (("ingest (read, pair, measure, write)", alone), ("the whole command (+ screen, publish)", whole)):
            fps = r["summary"]["scans"] / r["wall_s"]
            r.update(fps=round(fps, 1), ratio=round(fps / RECORDING_HZ, 2))
            print(f"{cameras} camera(s), {args.frames} scans of {args.points} points, {size / 2**20:.0f} MB, {what}: "
                  f"{r['wall_s']} s wall ({r['cpu_s']} s CPU), {fps:.1f} frames/s = {fps / RECORDING_HZ:.1f}x the "
                  f"recording's 10 Hz (target >= {TARGET}x): {'met' if fps / RECORDING_HZ >= TARGET else 'NOT met'}",
                  flush=True)
    (args.work / "results.json").write_text(json.dumps(rows, indent=2))
    shutil.rmtree(runs)


if __name__ == "__main__":
    main()
