"""Does mining pay? The product's selection (infer -> score -> select) against random picks of the same pool, at
the same label budget, from the same starting model, retrained the same way, evaluated on the same val split.

    .venv/bin/python bench/iterate_bench.py [--work DIR] [--seeds 3] [--budget 12] [--random-multiples 1 1.6 2.4]

The data (synthetic KITTI, admlops.components.synth): the starting dataset has only daylight frames; the pool
and the val split hold the rare condition it lacks: dark frames (every ``--dark-every``-th pool frame, half the val
frames), the images multiplied by ``--dark-gain`` with the labels unchanged (an underexposed camera). The labeling
vendor is played by the generator's ground truth: a chosen frame joins the train split with its true labels.

What runs (one process; mmengine's train and test loops with the config's dataloader workers, torch on the
machine's cores): RTMDet-tiny trained ``--base-iters`` on the starting dataset; the product selects ``--budget``
pool frames with that model (every signal, default weights and diversity); for each seed, the starting model is
fine-tuned ``--tune-iters`` iterations (same batch, same seed) on the starting train split plus the product's
frames, and on it plus ``multiple x budget`` random pool frames for each ``--random-multiples``; each fine-tuned
model is evaluated with the evaluate step (COCO mAP@0.5 on the whole val split, and by pycocotools on its dark
frames only). Nothing is timed: the figures are accuracies.

Printed: per method and budget the mean (and min..max over seeds) of overall and dark-frame mAP@0.5, the product's
lead over random at equal budget, and the smallest random budget whose mean dark mAP@0.5 reaches the product's.
Target: the product beats random on the dark frames by >= 5 points at equal budget, and random needs >= 1.6x the
labels to match it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np

TARGET_LEAD, TARGET_MULTIPLE = 5.0, 1.6
KITTI_DIRS = ("image_2", "label_2", "calib", "velodyne")


def darken(kitti_root: Path, frames: list[str], gain: float) -> None:
    from PIL import Image

    for frame in frames:
        path = kitti_root / "training" / "image_2" / f"{frame}.png"
        img = np.asarray(Image.open(path).convert("RGB"), np.float32)
        Image.fromarray(np.clip(img * gain, 0, 255).astype(np.uint8)).save(path)


def assemble(dest: Path, train: list[tuple[Path, str]], val: list[tuple[Path, str]]) -> Path:
    """A KITTI root whose train/val splits are the given (root, frame) pairs, renumbered, files hard-linked."""
    if dest.exists():
        shutil.rmtree(dest)
    for sub in KITTI_DIRS:
        (dest / "training" / sub).mkdir(parents=True)
    names = {"train": [], "val": []}
    for split, frames in (("train", train), ("val", val)):
        for root, frame in frames:
            new = f"{sum(map(len, names.values())):06d}"
            for sub in KITTI_DIRS:
                src = next((root / "training" / sub).glob(f"{frame}.*"))
                os.link(src, dest / "training" / sub / f"{new}{src.suffix}")
            names[split].append(new)
    (dest / "ImageSets").mkdir()
    for split, ids in names.items():
        (dest / "ImageSets" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return dest


def frames_of(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "training" / "label_2").glob("*.txt"))


def dark_map50(coco_dir: Path, eval_dir: Path, dark_names: set[str]) -> float:
    """mAP@0.5 of the evaluate step's detections on the val images whose file is a dark frame."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(coco_dir / "annotations" / "val.json"))
    ids = [im["id"] for im in gt.dataset["images"] if Path(im["file_name"]).stem in dark_names]
    dets = [d for d in json.loads((eval_dir / "work" / "detections.bbox.json").read_text()) if d["image_id"] in ids]
    if not dets:
        return 0.0
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.params.imgIds = ids
    ev.evaluate(), ev.accumulate(), ev.summarize()
    return float(ev.stats[1])


def run_case(work: Path, name: str, start: Path, picks: list[str], pool: Path, val: Path, base: Path, seed: int,
             iters: int, dark_val: set[str], dark_pool: set[str]) -> dict:
    from admlops.components.convert.kitti_coco import kitti_to_coco
    from admlops.components.evaluate.evaluate import evaluate
    from admlops.components.train.train import train

    case = work / name
    if not (case / "result.json").is_file():
        kitti = assemble(case / "kitti", [(start, f) for f in frames_of(start)] + [(pool, f) for f in picks],
                         [(val, f) for f in frames_of(val)])
        coco = case / "coco"
        shutil.rmtree(coco, ignore_errors=True)
        kitti_to_coco(kitti, coco)
        train(coco, case / "model", max_iters=iters, seed=seed, cfg_options={"load_from": str(base / "model.pth")})
        metrics = evaluate(coco, case / "model", case / "eval")
        # the assembled val frames keep val's order after the train frames: map them back to val's names
        val_names = dict(zip((kitti / "ImageSets" / "val.txt").read_text().split(), frames_of(val)))
        dark = {new for new, old in val_names.items() if old in dark_val}
        result = {"overall": metrics["bbox"]["bbox_mAP_50"], "dark": dark_map50(coco, case / "eval", dark),
                  "dark_picked": sum(f in dark_pool for f in picks), "picked": len(picks)}
        (case / "result.json").write_text(json.dumps(result))
        shutil.rmtree(case / "kitti"), shutil.rmtree(case / "model" / "work", ignore_errors=True)
    return json.loads((case / "result.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--work", type=Path, default=Path("/tmp/admlops-iterate-bench"), help="cache of data and models")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=12, help="frames the product labels")
    p.add_argument("--random-multiples", type=float, nargs="+", default=[1.0, 1.6, 2.4])
    p.add_argument("--start-frames", type=int, default=120)
    p.add_argument("--pool-frames", type=int, default=120)
    p.add_argument("--val-frames", type=int, default=40)
    p.add_argument("--dark-every", type=int, default=5, help="every n-th pool frame is dark (the rare condition)")
    p.add_argument("--dark-gain", type=float, default=0.3)
    p.add_argument("--base-iters", type=int, default=150)
    p.add_argument("--tune-iters", type=int, default=40)
    args = p.parse_args()

    from admlops.components.convert.kitti_coco import kitti_to_coco
    from admlops.components.iterate.infer import infer
    from admlops.components.iterate.score import score
    from admlops.components.iterate.select import select
    from admlops.components.synth.kitti import synth_kitti
    from admlops.components.train.train import train

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    start, pool, val = work / "start", work / "pool", work / "val"
    if not start.is_dir():
        synth_kitti(start, args.start_frames, seed=0, val_fraction=0)
    if not pool.is_dir():
        synth_kitti(pool, args.pool_frames, seed=1, val_fraction=0)
        darken(pool, frames_of(pool)[:: args.dark_every], args.dark_gain)
    if not val.is_dir():
        synth_kitti(val, args.val_frames, seed=2, val_fraction=0)
        darken(val, frames_of(val)[::2], args.dark_gain)
    dark_pool = set(frames_of(pool)[:: args.dark_every])
    dark_val = set(frames_of(val)[::2])

    base_coco, base = work / "base-coco", work / "base-model"
    if not (base / "model.pth").is_file():
        kitti_to_coco(assemble(work / "base-kitti", [(start, f) for f in frames_of(start)], [(val, f) for f in frames_of(val)]),
                      base_coco)
        train(base_coco, base, max_iters=args.base_iters, seed=0)
    selection = work / "selection"
    if not (selection / "selection.json").is_file():
        infer(base, pool / "training" / "image_2", work / "preds", reference=base_coco)
        score(work / "preds", base_coco, work / "scores")
        select(work / "preds", work / "scores", selection, args.budget)
    chosen = [f["frame"] for f in json.loads((selection / "selection.json").read_text())["frames"]]

    results: dict[tuple[str, int], list[dict]] = {}
    for seed in range(args.seeds):
        common = dict(start=start, pool=pool, val=val, base=base, seed=seed, iters=args.tune_iters, dark_val=dark_val,
                      dark_pool=dark_pool)
        results.setdefault(("product", args.budget), []).append(run_case(work, f"product-s{seed}", picks=chosen, **common))
        rng = np.random.default_rng(seed)
        order = list(rng.permutation(frames_of(pool)))
        for multiple in args.random_multiples:
            budget = min(round(multiple * args.budget), len(order))
            results.setdefault(("random", budget), []).append(run_case(work, f"random-b{budget}-s{seed}",
                                                                       picks=order[:budget], **common))

    print(f"\nlabel budget {args.budget}; pool {args.pool_frames} frames ({len(dark_pool)} dark); val {args.val_frames} "
          f"({len(dark_val)} dark); {args.seeds} seeds; fine-tune {args.tune_iters} iterations from the same start "
          f"model ({args.base_iters} iterations on {args.start_frames} daylight frames)")
    print(f"{'method':8} {'budget':>6} {'dark picked':>11} {'mAP@0.5 all':>18} {'mAP@0.5 dark':>18}")

    def mean(rs, key):
        return float(np.mean([r[key] for r in rs])) * 100

    for (method, budget), rs in sorted(results.items(), key=lambda kv: (kv[0][0] != "product", kv[0][1])):
        spread = lambda key: f"{mean(rs, key):5.1f} ({min(r[key] for r in rs) * 100:.1f}..{max(r[key] for r in rs) * 100:.1f})"
        print(f"{method:8} {budget:6d} {np.mean([r['dark_picked'] for r in rs]):11.1f} {spread('overall'):>18} "
              f"{spread('dark'):>18}")
    ours = mean(results[("product", args.budget)], "dark")
    lead = ours - mean(results[("random", args.budget)], "dark")
    matching = [b for (m, b), rs in sorted(results.items()) if m == "random" and mean(rs, "dark") >= ours]
    print(f"product's lead over random on dark frames at budget {args.budget}: {lead:+.1f} points "
          f"(target >= {TARGET_LEAD:.0f}): {'met' if lead >= TARGET_LEAD else 'NOT met'}")
    if matching:
        need = matching[0] / args.budget
        print(f"random matches the product's dark mAP@0.5 at {matching[0]} labels = {need:.1f}x "
              f"(target >= {TARGET_MULTIPLE}x): {'met' if need >= TARGET_MULTIPLE else 'NOT met'}")
    else:
        top = max(b for m, b in results if m == "random")
        print(f"random does not match it up to {top} labels = {top / args.budget:.1f}x (target >= {TARGET_MULTIPLE}x): met")


if __name__ == "__main__":
    main()
