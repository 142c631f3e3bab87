"""The 2D model families side by side, the product's recipe against mmdet's stock one, fine-tuning against
training from scratch: every model on the same converted data and the same wall time of training.

    .venv/bin/python bench/models_bench.py [--work DIR] [--minutes 4] [--sections recipe variants families finetune]

The data (synthetic KITTI, admlops.components.synth) is generated with a seed (31) and an appearance the tests
never use: ``palette="shared"``, every object painted in any class's colour, so Car, Pedestrian and Cyclist differ
by shape and size only; ``--frames`` frames, every 5th one val. Converted with the product's converter
(kitti-3class). Equal wall time: each training gets ``--minutes`` of training (one process, the config's
dataloader workers, torch on the machine's cores; evaluation, export and benchmark are not counted). A
product config is trained with ``admlops train``'s function for the number of iterations its measured speed fits
in that time (a 12-iteration probe, not counted; the schedule then runs to its end), capped at the time;
mmdet's stock config runs as its ``tools/train.py`` runs it (``Runner.from_cfg(cfg).train()``) until the time is
up, then its weights at that moment (EMA's, as its checkpoints hold) are evaluated. Every model is evaluated by
the evaluate step: COCO mAP@0.5 on the val split.

Sections:

- ``recipe``: RTMDet-tiny with the product's recipe (configs/models/rtmdet_tiny_kitti.py) against the same model
  with mmdet's stock recipe (``mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py``: 640x640 inputs, batch 32, mosaic,
  mix-up, 1000 warm-up iterations, EMA), changed only where the data and the machine require it: the dataset and
  its classes, no ImageNet download (``init_cfg=None``: nothing is downloaded, in the product or here), 2
  dataloader workers (it asks for 10; this machine has 2 cores); and once more at the product's batch of 8 (the
  stock batch of 32 at 640x640 runs a handful of iterations in minutes on a CPU). Target: the product's mAP@0.5
  >= 2x stock's.
- ``variants``: the experiments that chose the product's recipe: the config against one change at a time
  (``VARIANTS``), same data, same time. The README's recipe table is this section's output.
- ``families``: every 2D config (``FAMILIES``): iterations reached, mAP@0.5, parameters and FLOPs (mmengine's
  counter, at the config's test input size, on one val image as mmdet's tools/analysis_tools/get_flops.py does),
  then export to every default deploy target of the task (ONNX Runtime fp32, OpenVINO fp32, int8; gates
  reported, not enforced), and the benchmark step at batch 1 on ``--max-images`` val images (one process per row;
  threads: the runtime's default): per target whether it runs, its parity drop against PyTorch (the export's
  gate, mAP@0.5 points on the val split) and its p50 latency (one call: preprocessed batch in, boxes out).
- ``finetune``: new data (seed 32, same classes and appearance); RTMDet-tiny from scratch for the iterations the
  recipe section's product model ran, against fine-tuning that model (``--init-from``: at the config's
  ``finetune_lr_factor`` of its learning rate) for a third of them.
  Target: the fine-tuned model reaches the from-scratch mAP@0.5.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TARGET_STOCK_MULTIPLE, FINETUNE_FRACTION = 2.0, 1 / 3
DATA_SEED, NEW_DATA_SEED, PALETTE = 31, 32, "shared"
PROBE_ITERS = 12
RECIPE_CONFIG = "rtmdet_tiny_kitti"  # the demo's model: the recipe, variants and finetune sections train it
STOCK = "mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py"
FAMILIES = ("rtmdet_tiny_kitti", "yolox_tiny_kitti", "yolov3_mobilenetv2_kitti", "faster_rcnn_r50_fpn_kitti_cpu",
            "rtmdet_s_kitti", "yolox_s_kitti", "faster_rcnn_r50_fpn_kitti")
# one change at a time against configs/models/rtmdet_tiny_kitti.py (dotted config keys, as --cfg-options)
VARIANTS = {
    "lr 0.008": {"optim_wrapper.optimizer.lr": 0.008},
    "batch 4": {"train_dataloader.batch_size": 4},
    "batch 16": {"train_dataloader.batch_size": 16},
    "no scale jitter": {"train_dataloader.dataset.pipeline.2.ratio_range": [1.0, 1.0]},
    "EMA (RTMDet's)": {"custom_hooks": [dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002,
                                             update_buffers=True, priority=49)]},
}


class TimeUp(Exception):
    """Raised by ``wall_clock`` where the loop cannot stop inside an epoch."""


def wall_clock(seconds: float):
    """An mmengine hook ending training ``seconds`` after its first iteration started: an IterBasedTrainLoop's
    current iteration becomes its last (the checkpoint hook then saves it and validation runs); an epoch-based
    loop cannot stop inside an epoch, so ``TimeUp`` is raised there. ``iters`` and ``elapsed`` say what ran."""
    from mmengine.hooks import Hook
    from mmengine.runner import IterBasedTrainLoop

    class WallClock(Hook):
        priority = "VERY_HIGH"  # before the checkpoint hook sees whether this iteration is the last
        start, iters, elapsed = None, 0, 0.0

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self.start = self.start or time.monotonic()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.iters += 1
            self.elapsed = time.monotonic() - self.start
            if self.elapsed >= seconds:
                if not isinstance(runner.train_loop, IterBasedTrainLoop):
                    raise TimeUp()
                runner.train_loop._max_iters = runner.iter + 1

    return WallClock()


def isolated(fn, *args, **kwargs) -> dict:
    """``fn``'s record, computed in a fresh process (``fn`` caches it on disk, so the call here only reads it): each
    training's dataloader workers and caches end with its process (one process running them all ran out of
    memory)."""
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(target=fn, args=args, kwargs=kwargs)
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"{fn.__name__}{args[1:2]} failed (exit code {proc.exitcode}); its log is above")
    return fn(*args, **kwargs)


def dataset(work: Path, name: str, frames: int, seed: int) -> Path:
    from admlops.components.convert.to_coco import kitti_to_coco
    from admlops.components.synth.kitti import synth_kitti

    kitti, coco = work / f"{name}-kitti", work / f"{name}-coco"
    if not (kitti / "ImageSets" / "val.txt").is_file():
        synth_kitti(kitti, frames=frames, seed=seed, palette=PALETTE)
    if not (coco / "summary.json").is_file():
        kitti_to_coco(kitti, coco)
    return coco


def seconds_per_iter(coco: Path, work: Path, config: str, options: dict) -> float:
    """The median iteration time of a short run of ``config`` (train_log.json's per-iteration ``time``)."""
    import shutil

    from admlops.components.train.train import train

    probe = work / "probe"
    shutil.rmtree(probe, ignore_errors=True)
    train(coco, probe, config, max_iters=PROBE_ITERS, cfg_options={**options, "default_hooks.logger.interval": 1})
    times = sorted([r["time"] for r in json.loads((probe / "train_log.json").read_text()) if "time" in r][2:])  # not the first 2
    shutil.rmtree(probe)
    return times[len(times) // 2]


def train_for(coco: Path, out: Path, config: str, seconds: float, options: dict | None = None,
              init_from: str = "", iters: int | None = None) -> dict:
    """Train ``config`` with the product for ``iters`` or as many iterations as fit in ``seconds`` (capped there);
    evaluate; the record (cached in ``out/bench.json``)."""
    from admlops.components.evaluate.evaluate import evaluate
    from admlops.components.train.train import train

    record = out / "bench.json"
    if record.is_file():
        return json.loads(record.read_text())
    options = dict(options or {})
    if iters is None:
        iters = max(int(seconds / seconds_per_iter(coco, out.parent, config, options)), 10)
    clock = wall_clock(seconds)
    train(coco, out, config, max_iters=iters, cfg_options=options, init_from=init_from, hooks=[clock])
    metrics = evaluate(coco, out, out / "eval")
    result = {"config": config, "options": options, "iters": clock.iters, "planned_iters": iters,
              "train_s": clock.elapsed, "mAP50": metrics["bbox"]["bbox_mAP_50"], "init_from": init_from}
    record.write_text(json.dumps(result, indent=2))
    return result


def train_stock(coco: Path, out: Path, seconds: float, batch_size: int | None = None) -> dict:
    """mmdet's stock RTMDet-tiny recipe as tools/train.py runs it (module doc), stopped after ``seconds``;
    ``batch_size``: its one change beyond the module doc's (None: the stock 32)."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from admlops import compat
    from admlops.components.evaluate.evaluate import evaluate
    from admlops.components.train.train import publish_weights
    from admlops.localfs import atomic_dir
    from admlops.mmconfig import use_dataset

    record = out / "bench.json"
    if record.is_file():
        return json.loads(record.read_text())
    compat.apply()
    cfg = Config.fromfile(str(Path(__file__).resolve().parent / "stock_rtmdet_tiny.py"))
    use_dataset(cfg, coco)
    if batch_size:
        cfg.train_dataloader.batch_size = batch_size
    cfg.work_dir = str(out.parent / f".{out.name}.work")
    compat.own_runner_state(cfg)
    runner = Runner.from_cfg(cfg)
    clock = wall_clock(seconds)
    runner.register_hook(clock)
    try:
        runner.train()
    except TimeUp:
        pass
    with atomic_dir(out) as tmp:
        runner.save_checkpoint(str(tmp), "last.pth")  # EMAHook swaps its averaged weights into what is saved
        publish_weights(tmp / "last.pth", tmp / "model.pth", {"config": STOCK})
        (tmp / "last.pth").unlink()
        cfg.work_dir = "work"
        cfg.dump(str(tmp / "config.py"))
    metrics = evaluate(coco, out, out / "eval")
    result = {"config": STOCK, "batch_size": cfg.train_dataloader.batch_size, "iters": clock.iters, "train_s": clock.elapsed, "mAP50": metrics["bbox"]["bbox_mAP_50"],
              "epochs": runner.epoch}
    record.write_text(json.dumps(result, indent=2))
    return result


def complexity(coco: Path, model_dir: Path) -> tuple[float, float]:
    """(parameters, FLOPs) of a trained model at its test input, on one val image (mmdet's get_flops.py way)."""
    from functools import partial

    import torch
    from mmengine.analysis import get_model_complexity_info
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    from mmdet.registry import DATASETS, MODELS
    from admlops.mmconfig import use_dataset

    cfg = Config.fromfile(str(model_dir / "config.py"))
    use_dataset(cfg, coco)
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model).eval()
    data = model.data_preprocessor(pseudo_collate([DATASETS.build(cfg.test_dataloader.dataset)[0]]), False)
    model.forward = partial(model.forward, data_samples=data["data_samples"])
    with torch.no_grad():
        info = get_model_complexity_info(model, None, inputs=data["inputs"], show_table=False, show_arch=False)
    return float(info["params"]), float(info["flops"])


def deploy(coco: Path, model_dir: Path, max_images: int, targets: str | None = None) -> dict:
    """Export to ``targets`` (default: the task's; gates reported, not enforced) and benchmark them at batch 1:
    target -> {runs, drop (points), passed, p50_ms} (``runs`` False with the reason where export refused it)."""
    from admlops.components.benchmark.benchmark import sweep
    from admlops.components.export.export import export
    from admlops.errors import UsageError

    record = model_dir.parent / f"{model_dir.name}-deploy.json"
    if record.is_file():
        return json.loads(record.read_text())
    out, result = model_dir.parent / f"{model_dir.name}-export", {}
    try:
        exported = export(coco, model_dir, out, targets=targets, enforce_gates=False)
    except UsageError as exc:
        result = {"all": {"runs": False, "why": str(exc)}}
    else:
        gates = {f"{g['backend']}:{g['precision']}": g for g in json.loads((out / "gates.json").read_text())["gates"]}
        report = sweep(coco, out, model_dir, model_dir.parent / f"{model_dir.name}-bench", backends=targets,
                       batch_sizes=[1], max_images=max_images)
        for row in report["rows"]:
            target = f"{row['runtime']}:{row['precision']}"
            result[target] = {"runs": True, "p50_ms": row["latency"]["p50_ms"],
                              "drop": gates[target]["drop_points"] if target in gates else None, "passed": True}
        for gate in report["not_deployable"]:
            result[f"{gate['backend']}:{gate['precision']}"] = {"runs": True, "p50_ms": None, "passed": False,
                                                                "drop": gate["drop_points"], "why": "failed its gate"}
        result["refused"] = exported.get("refused", [])
    record.write_text(json.dumps(result, indent=2))
    return result


def recipe(args, coco: Path) -> dict:
    ours = isolated(train_for, coco, args.work / "recipe-product", RECIPE_CONFIG, args.minutes * 60)
    stock = isolated(train_stock, coco, args.work / "recipe-stock", args.minutes * 60)
    stock8 = isolated(train_stock, coco, args.work / "recipe-stock-b8", args.minutes * 60, batch_size=8)
    print(f"\nRTMDet-tiny, {args.minutes:g} min of training each (data: seed {DATA_SEED}, palette {PALETTE}):")
    print(f"{'recipe':26} {'iters':>6} {'train s':>8} {'mAP@0.5':>8}")
    for name, r in (("product", ours), ("stock (batch 32)", stock), ("stock at the product's batch 8", stock8)):
        print(f"{name:26} {r['iters']:>6} {r['train_s']:>8.0f} {r['mAP50']:>8.3f}")
    for name, r in (("stock", stock), ("stock at batch 8", stock8)):
        ok = ours["mAP50"] >= TARGET_STOCK_MULTIPLE * r["mAP50"]
        ratio = f"{ours['mAP50'] / r['mAP50']:.1f}x" if r["mAP50"] > 0 else "above 0.000 (stock learned nothing yet)"
        print(f"product vs {name}: mAP@0.5 {ratio} (target >= {TARGET_STOCK_MULTIPLE:g}x): {'met' if ok else 'NOT met'}")
    return ours


def variants(args, coco: Path) -> None:
    base = isolated(train_for, coco, args.work / "recipe-product", RECIPE_CONFIG, args.minutes * 60)
    print(f"\nRTMDet-tiny recipe experiments, {args.minutes:g} min of training each:")
    print(f"{'change':24} {'iters':>6} {'mAP@0.5':>8} {'vs config':>9}")
    print(f"{'(the config)':24} {base['iters']:>6} {base['mAP50']:>8.3f}")
    for i, (name, options) in enumerate(VARIANTS.items()):
        r = isolated(train_for, coco, args.work / f"variant-{i}", RECIPE_CONFIG, args.minutes * 60, options)
        print(f"{name:24} {r['iters']:>6} {r['mAP50']:>8.3f} {100 * (r['mAP50'] - base['mAP50']):>+8.1f}")


def families(args, coco: Path) -> None:
    rows = []
    for config in args.configs:  # the recipe section's model is RTMDet-tiny's row
        model = args.work / ("recipe-product" if config == RECIPE_CONFIG else f"family-{config}")
        trained = isolated(train_for, coco, model, config, args.minutes * 60)
        rows.append((config, trained, *complexity(coco, model), isolated(deploy, coco, model, args.max_images)))
    targets = sorted({t for *_, d in rows for t in d if ":" in t})
    print(f"\n2D families, {args.minutes:g} min of training each; latency p50 ms at batch 1 on {args.max_images} val "
          "images (the runtime's default threads); drop: the export's parity gate, mAP@0.5 points vs PyTorch")
    head = f"{'config':32} {'iters':>6} {'mAP@0.5':>8} {'params M':>9} {'GFLOPs':>7} " + " ".join(f"{t:>22}" for t in targets)
    print(head)
    print("-" * len(head))
    for config, trained, params, flops, dep in rows:
        cells = []
        for t in targets:
            d = dep.get(t) or dep.get("all") or {"runs": False}
            if not d["runs"] or d.get("p50_ms") is None:
                cells.append(f"{'refused' if not d['runs'] else 'gate failed':>22}")
            else:
                drop = "" if d["drop"] is None else f" {d['drop']:+.1f}pt"
                cells.append(f"{d['p50_ms']:>12.1f} ms{drop:>7}")
        print(f"{config:32} {trained['iters']:>6} {trained['mAP50']:>8.3f} {params / 1e6:>9.2f} {flops / 1e9:>7.2f} "
              + " ".join(cells))
    for config, *_, dep in rows:
        for why in [d.get("why") for d in dep.values() if isinstance(d, dict) and d.get("why")] + dep.get("refused", []):
            print(f"  {config}: {why}")


def finetune(args, coco: Path) -> None:
    parent = isolated(train_for, coco, args.work / "recipe-product", RECIPE_CONFIG, args.minutes * 60)
    new = dataset(args.work, "new", args.frames, NEW_DATA_SEED)
    iters = parent["iters"]
    scratch = isolated(train_for, new, args.work / "finetune-scratch", RECIPE_CONFIG, 10**9, iters=iters)
    tuned = isolated(train_for, new, args.work / "finetune-tuned", RECIPE_CONFIG, 10**9,
                      init_from=str(args.work / "recipe-product"), iters=max(int(iters * FINETUNE_FRACTION), 1))
    print(f"\nNew data (seed {NEW_DATA_SEED}), RTMDet-tiny: from scratch against fine-tuned from the recipe model:")
    print(f"{'start':12} {'iters':>6} {'train s':>8} {'mAP@0.5':>8}")
    for name, r in (("scratch", scratch), ("fine-tuned", tuned)):
        print(f"{name:12} {r['iters']:>6} {r['train_s']:>8.0f} {r['mAP50']:>8.3f}")
    verdict = "met" if tuned["mAP50"] >= scratch["mAP50"] else "NOT met"
    print(f"fine-tuned in {tuned['iters']}/{scratch['iters']} of the iterations reaches {tuned['mAP50']:.3f} against "
          f"{scratch['mAP50']:.3f} from scratch (target: reaches it in <= 1/3): {verdict}")


SECTIONS = {"recipe": recipe, "variants": variants, "families": families, "finetune": finetune}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--work", type=Path, default=Path("/tmp/admlops-models-bench"), help="cache of data and models")
    p.add_argument("--minutes", type=float, default=4.0, help="training wall time per model")
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--configs", nargs="+", default=list(FAMILIES), help="families: the configs")
    p.add_argument("--max-images", type=int, default=20, help="families: val images the latency is measured on")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    coco = dataset(args.work, "data", args.frames, DATA_SEED)
    for name in args.sections:
        SECTIONS[name](args, coco)


if __name__ == "__main__":
    main()
