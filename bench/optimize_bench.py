"""Smaller, faster models, side by side in one run: a trained RTMDet-tiny (the parent) against what structural
pruning makes of it at each MACs reduction, every model through the same export, gates and benchmark.

    .venv/bin/python bench/optimize_bench.py [--work DIR] [--reductions 0.4 0.6] [--parent-iters 300]
                                             [--finetune-iters 150] [--max-images 20]

Data: the models bench's (bench/models_bench.py: synthetic KITTI, seed 31, ``palette="shared"``, classes that differ
by shape and size only; 400 frames, every 5th val), never the tests' generator settings. The parent is
``rtmdet_tiny_kitti`` trained ``--parent-iters`` iterations by the train step; each variant is ``admlops prune``'s
function on it (the config's pruning settings: Taylor importance, the heads' last layers whole) with
``--finetune-iters`` of fine-tuning at the config's fine-tuning rate. Every model: COCO mAP@0.5 on the val split
(the evaluate step), MACs and parameters as Torch-Pruning counts them at the traced input (one val image, 640x192),
export to the default CPU targets (ONNX Runtime fp32, OpenVINO fp32, OpenVINO int8; gates reported, not enforced),
and the benchmark step at batch 1 on ``--max-images`` val images: one process per row, the runtime's default
threads (both cores), p50 of one call (a preprocessed image in, boxes out). Each training, pruning and export runs in
its own process, one at a time; results are cached under ``--work`` (delete a directory to redo it).

Targets (issue 20): a pruned model with >= 40% fewer MACs, >= 1.5x lower CPU latency, <= 1.5 mAP@0.5 points lost.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models_bench import DATA_SEED, PALETTE, dataset, deploy, isolated, train_for  # noqa: E402

CONFIG = "rtmdet_tiny_kitti"
TARGETS = ("onnxruntime:fp32", "openvino:fp32", "openvino:int8")
GOAL = {"macs": 0.40, "speedup": 1.5, "drop": 1.5}


def prune_for(coco: Path, out: Path, parent: Path, reduction: float, iters: int) -> dict:
    """``parent`` pruned by ``reduction`` of its MACs and fine-tuned ``iters`` iterations, evaluated; the record
    (cached in ``out/bench.json``)."""
    from admlops.components.evaluate.evaluate import evaluate
    from admlops.components.prune.prune import prune

    record = out / "bench.json"
    if record.is_file():
        return json.loads(record.read_text())
    pruned = prune(parent, coco, out / "model", reduction, finetune_iters=iters)
    metrics = evaluate(coco, out / "model", out / "eval")
    result = {"reduction": reduction, "macs": pruned["macs"], "params": pruned["params"],
              "finetune_iters": iters, "mAP50": metrics["bbox"]["bbox_mAP_50"]}
    record.write_text(json.dumps(result, indent=2))
    return result


def deployed(coco: Path, model_dir: Path, max_images: int) -> dict:
    return isolated(deploy, coco, model_dir, max_images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/admlops-optimize-bench"))
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--reductions", type=float, nargs="+", default=[0.4, 0.6])
    ap.add_argument("--parent-iters", type=int, default=300)
    ap.add_argument("--finetune-iters", type=int, default=150)
    ap.add_argument("--max-images", type=int, default=20)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    coco = dataset(args.work, "data", args.frames, DATA_SEED)
    parent = isolated(train_for, coco, args.work / "parent", CONFIG, float("inf"), iters=args.parent_iters)
    rows = [{"name": "parent", "mAP50": parent["mAP50"], "macs": None, "params": None,
             "deploy": deployed(coco, args.work / "parent", args.max_images)}]
    for r in args.reductions:
        out = args.work / f"pruned-{r:g}"
        pruned = isolated(prune_for, coco, out, args.work / "parent", r, args.finetune_iters)
        rows[0]["macs"], rows[0]["params"] = pruned["macs"][0], pruned["params"][0]
        rows.append({"name": f"pruned {r:.0%}", "mAP50": pruned["mAP50"], "macs": pruned["macs"][1],
                     "params": pruned["params"][1], "deploy": deployed(coco, out / "model", args.max_images)})
    print(f"\nRTMDet-tiny parent ({args.parent_iters} iterations) and its pruned variants ({args.finetune_iters} "
          f"fine-tuning iterations each); data seed {DATA_SEED}, palette {PALETTE}; batch 1, default threads, "
          f"p50 ms of one call on {args.max_images} val images, (drop) = the export gate's mAP@0.5 points below PyTorch:")
    head = f"{'variant':12} {'MACs G':>7} {'params M':>8} {'mAP@0.5':>8} " + " ".join(f"{t:>24}" for t in TARGETS)
    print(head)
    base = rows[0]["deploy"]
    for row in rows:
        cells = []
        for t in TARGETS:
            d = row["deploy"].get(t, {})
            if d.get("p50_ms"):
                speed = base.get(t, {}).get("p50_ms", 0) / d["p50_ms"] if base.get(t, {}).get("p50_ms") else 0
                cells.append(f"{d['p50_ms']:6.1f} ({speed:.2f}x, {d['drop'] or 0:+.1f})")
            else:
                cells.append(f"{'failed its gate' if d.get('why') else '-':>24}")
        print(f"{row['name']:12} {row['macs'] / 1e9:7.2f} {row['params'] / 1e6:8.2f} {row['mAP50']:8.3f} "
              + " ".join(f"{c:>24}" for c in cells))
    print(f"\nTargets: >= {GOAL['macs']:.0%} fewer MACs, >= {GOAL['speedup']}x lower latency, <= {GOAL['drop']} "
          "mAP@0.5 points lost:")
    for row in rows[1:]:
        fewer = 1 - row["macs"] / rows[0]["macs"]
        lost = 100 * (rows[0]["mAP50"] - row["mAP50"])
        speeds = {t: base[t]["p50_ms"] / row["deploy"][t]["p50_ms"] for t in TARGETS
                  if base.get(t, {}).get("p50_ms") and row["deploy"].get(t, {}).get("p50_ms")}
        best = max(speeds.items(), key=lambda kv: kv[1]) if speeds else ("-", 0.0)
        met = fewer >= GOAL["macs"] and best[1] >= GOAL["speedup"] and lost <= GOAL["drop"]
        print(f"  {row['name']}: {fewer:.0%} fewer MACs, {lost:+.1f} points, best speed-up {best[1]:.2f}x "
              f"({best[0]}): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
