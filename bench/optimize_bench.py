"""Smaller, faster models, side by side in one run: a trained RTMDet-tiny (the parent) against what structural
pruning makes of it at each MACs reduction, and against the same RTMDet-tiny trained as long under a larger
teacher (knowledge distillation), every model through the same export, gates and benchmark.

    .venv/bin/python bench/optimize_bench.py [--work DIR] [--reductions 0.4 0.6] [--parent-iters 300]
                                             [--finetune-iters 150] [--teacher-iters 400] [--max-images 20]
                                             [--qat-iters 100] [--sections prune-distill qat]

Data: the models bench's (bench/models_bench.py: synthetic KITTI, seed 31, ``palette="shared"``, classes that differ
by shape and size only; 400 frames, every 5th val), never the tests' generator settings. The parent is
``rtmdet_tiny_kitti`` trained ``--parent-iters`` iterations by the train step. Pruning starts from a model near
convergence, as a zoo model is: ``parent +ft``, the parent trained ``--finetune-iters`` more at the config's
fine-tuning rate (``--init-from``); each variant is ``admlops prune``'s function on it (the config's pruning
settings: Taylor importance, the heads' last layers whole) with ``--finetune-iters`` of fine-tuning; the control,
``parent +2ft``, is ``parent +ft`` trained those iterations more, unpruned, the same way, so accuracy is compared at
equal training and latency against the model pruned. Distillation: the teacher is RTMDet-s's architecture at RTMDet-tiny's input size
and batch (TEACHER below) trained ``--teacher-iters`` iterations; ``distilled`` is ``admlops distill``'s function
training ``rtmdet_tiny_kitti`` from scratch for ``--parent-iters`` iterations (the parent's schedule and seed: the
parent is the student trained alone) under that teacher, with the config's distillation settings. Every model: COCO mAP@0.5 on the val split
(the evaluate step), MACs and parameters as Torch-Pruning counts them at the traced input (one val image, 640x192),
export to the default CPU targets (ONNX Runtime fp32, OpenVINO fp32, OpenVINO int8; gates reported, not enforced),
and the benchmark step at batch 1 on ``--max-images`` val images: one process per row, the runtime's default
threads (both cores), p50 of one call (a preprocessed image in, boxes out). Each training, pruning and export runs in
its own process, one at a time; results are cached under ``--work`` (delete a directory to redo it).

Quantization-aware training (section ``qat``): the case is the parent with its first input channel left
unnormalised and its first convolution rescaled to match (``unnormalised``: the same function in float), an input
whose channels span ranges ~57x apart. Rows: its post-training int8 (the product's calibration: ONNX Runtime's
min/max uint8, OpenVINO's NNCF), the QAT model with its ranges calibrated only (``admlops qat --iters 0``) and after
``--qat-iters`` iterations of quantization-aware training; every int8 target's mAP@0.5 against the float model's
(the int8 gate's bar, 1.5 points).

Targets (issue 20): a pruned model with >= 40% fewer MACs, >= 1.5x lower CPU latency, <= 1.5 mAP@0.5 points lost;
a distilled student >= 2 mAP@0.5 points above the same student trained alone for the same iterations; a QAT int8
model that passes its gate where post-training int8 of the same model does not.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models_bench import DATA_SEED, PALETTE, dataset, deploy, isolated, train_for  # noqa: E402

from admlops.components.prune.prune import model_size  # noqa: E402

CONFIG = "rtmdet_tiny_kitti"
TARGETS = ("onnxruntime:fp32", "openvino:fp32", "openvino:int8")
GOAL = {"macs": 0.40, "speedup": 1.5, "drop": 1.5, "distill_gain": 2.0}
QAT_TARGETS = "onnxruntime:int8,openvino:int8"
TEACHER = """_base_ = '{base}'
model = dict(backbone=dict(deepen_factor=0.33, widen_factor=0.5),
             neck=dict(in_channels=[128, 256, 512], out_channels=128, num_csp_blocks=1),
             bbox_head=dict(in_channels=128, feat_channels=128, exp_on_reg=False))
"""  # RTMDet-s (configs/models/rtmdet_s_kitti.py's model) at RTMDet-tiny's input size, batch, rate and schedule


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


def distill_for(coco: Path, out: Path, teacher: Path, iters: int) -> dict:
    """``rtmdet_tiny_kitti`` trained ``iters`` iterations under ``teacher``, evaluated; the record (cached)."""
    from admlops.components.distill.distill import distill
    from admlops.components.evaluate.evaluate import evaluate

    record = out / "bench.json"
    if record.is_file():
        return json.loads(record.read_text())
    distilled = distill(teacher, coco, out / "model", CONFIG, max_iters=iters)
    metrics = evaluate(coco, out / "model", out / "eval")
    result = {**distilled, "mAP50": metrics["bbox"]["bbox_mAP_50"]}
    record.write_text(json.dumps(result, indent=2))
    return result


def deployed(coco: Path, model_dir: Path, max_images: int, targets: str | None = None) -> dict:
    return isolated(deploy, coco, model_dir, max_images, targets)


def unnormalised(parent: Path, out: Path) -> Path:
    """The parent with its first input channel left in pixel units (its data preprocessor's std 1 for that channel)
    and its first convolution's weights for the channel divided by the old std: in float the same function, to
    rounding; in int8 an input whose channels span ranges ~57x apart (what an image stacked with a channel in other
    units, depth or intensity, looks like to the first layer)."""
    import torch
    from mmengine.config import Config

    if (out / "model.pth").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    cfg = Config.fromfile(str(parent / "config.py"))
    std = list(cfg.model.data_preprocessor.std)
    old, std[0] = std[0], 1.0
    cfg.model.data_preprocessor.std = std
    checkpoint = torch.load(parent / "model.pth", map_location="cpu", weights_only=False)
    [stem] = [k for k in checkpoint["state_dict"] if k.endswith("backbone.stem.0.conv.weight")]
    weight = checkpoint["state_dict"][stem].clone()
    weight[:, 0] /= old
    checkpoint["state_dict"][stem] = weight
    torch.save(checkpoint, out / "model.pth")
    cfg.dump(str(out / "config.py"))
    return out


def qat_for(coco: Path, out: Path, parent: Path, iters: int) -> dict:
    """``parent`` fine-tuned ``iters`` iterations with int8 in the loop (0: its ranges calibrated only), evaluated;
    the record (cached)."""
    from admlops.components.evaluate.evaluate import evaluate
    from admlops.components.qat.qat import qat

    record = out / "bench.json"
    if record.is_file():
        return json.loads(record.read_text())
    trained = qat(parent, coco, out / "model", iters=iters)
    metrics = evaluate(coco, out / "model", out / "eval")
    result = {"iters": iters, "quantized": trained["quantized"], "mAP50": metrics["bbox"]["bbox_mAP_50"]}
    record.write_text(json.dumps(result, indent=2))
    return result


def qat_case(coco: Path, work: Path, qat_iters: int, max_images: int) -> None:
    """The QAT rows: the unnormalised parent post-training quantized, its Q/DQ graph calibrated only, and after
    ``qat_iters`` iterations of quantization-aware training; every int8 target gated against its own PyTorch."""
    from admlops.components.evaluate.evaluate import evaluate

    case = unnormalised(work / "parent", work / "parent-unnormalised")
    if not (case / "eval" / "metrics.json").is_file():
        isolated(evaluate, coco, case, case / "eval")
    float_map = json.loads((case / "eval" / "metrics.json").read_text())["bbox"]["bbox_mAP_50"]
    rows = [("post-training int8", float_map, deployed(coco, case, max_images, QAT_TARGETS))]
    for iters in (0, qat_iters):
        out = work / f"qat-{iters}"
        record = isolated(qat_for, coco, out, case, iters)
        name = "Q/DQ calibrated only" if iters == 0 else f"QAT {iters} iterations"
        rows.append((name, record["mAP50"], deployed(coco, out / "model", max_images, QAT_TARGETS)))
    targets = QAT_TARGETS.split(",")
    print(f"\nQuantization-aware training: the parent with its first input channel unnormalised (the same function "
          f"in float: PyTorch mAP@0.5 {float_map:.3f}). Per int8 target: its mAP@0.5, its drop against the float "
          f"model (the gate's bar: 1.5 points; a QAT model's own gate compares it with its own int8 PyTorch, "
          f"drop in brackets), p50 ms at batch 1:")
    print(f"{'variant':24} {'PyTorch':>8} " + " ".join(f"{t:>40}" for t in targets))
    verdicts = {}
    for name, value, result in rows:
        cells = []
        for t in targets:
            d = result.get(t, {})
            if "drop" not in d:
                cells.append("-")
                continue
            measured = value - d["drop"] / 100
            drop = 100 * (float_map - measured)
            verdicts[(name, t)] = drop <= GOAL["drop"]
            ms = f"{d['p50_ms']:.1f} ms" if d.get("p50_ms") else "not timed"
            cells.append(f"{measured:.3f} {drop:+.1f} {'passed' if drop <= GOAL['drop'] else 'FAILED'} "
                         f"({d['drop']:+.1f}), {ms}")
        print(f"{name:24} {value:8.3f} " + " ".join(f"{c:>40}" for c in cells))
    for t in targets:
        ptq, qat = verdicts.get((rows[0][0], t)), verdicts.get((rows[-1][0], t))
        print(f"  {t}: post-training int8 {'passed' if ptq else 'FAILED'}, QAT {'passed' if qat else 'FAILED'}: "
              f"{'a case where QAT passes and post-training int8 does not' if qat and not ptq else 'not such a case'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/admlops-optimize-bench"))
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--reductions", type=float, nargs="+", default=[0.4, 0.5, 0.6])
    ap.add_argument("--parent-iters", type=int, default=300)
    ap.add_argument("--finetune-iters", type=int, default=150)
    ap.add_argument("--teacher-iters", type=int, default=400)
    ap.add_argument("--max-images", type=int, default=20)
    ap.add_argument("--qat-iters", type=int, default=100)
    ap.add_argument("--sections", nargs="+", choices=("prune-distill", "qat"), default=["prune-distill", "qat"])
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    coco = dataset(args.work, "data", args.frames, DATA_SEED)
    parent = isolated(train_for, coco, args.work / "parent", CONFIG, float("inf"), iters=args.parent_iters)
    if "qat" in args.sections:
        qat_case(coco, args.work, args.qat_iters, args.max_images)
    if "prune-distill" not in args.sections:
        return
    # the model pruned: the parent trained the fine-tuning iterations more (near convergence, as a zoo model is);
    # the control: that model trained them more again, unpruned (same rate, same data)
    more = isolated(train_for, coco, args.work / "parent-more", CONFIG, float("inf"), init_from=str(args.work / "parent"),
                    iters=args.finetune_iters)
    control = isolated(train_for, coco, args.work / "parent-more2", CONFIG, float("inf"),
                       init_from=str(args.work / "parent-more"), iters=args.finetune_iters)
    rows = [{"name": "parent", "mAP50": parent["mAP50"], "macs": None, "params": None,
             "deploy": deployed(coco, args.work / "parent", args.max_images)},
            {"name": "parent +ft", "mAP50": more["mAP50"], "macs": None, "params": None,
             "deploy": deployed(coco, args.work / "parent-more", args.max_images)},
            {"name": "parent +2ft", "mAP50": control["mAP50"], "macs": None, "params": None,
             "deploy": deployed(coco, args.work / "parent-more2", args.max_images)}]
    for r in args.reductions:
        out = args.work / f"pruned-{r:g}"
        pruned = isolated(prune_for, coco, out, args.work / "parent-more", r, args.finetune_iters)
        for row in rows[:3]:
            row["macs"], row["params"] = pruned["macs"][0], pruned["params"][0]
        rows.append({"name": f"pruned {r:.0%}", "mAP50": pruned["mAP50"], "macs": pruned["macs"][1],
                     "params": pruned["params"][1], "deploy": deployed(coco, out / "model", args.max_images)})
    teacher_cfg = args.work / "rtmdet_s_cpu.py"
    teacher_cfg.write_text(TEACHER.format(base=Path(__file__).resolve().parent.parent / "configs/models" / f"{CONFIG}.py"))
    teacher = isolated(train_for, coco, args.work / "teacher", str(teacher_cfg), float("inf"), iters=args.teacher_iters)
    distilled = isolated(distill_for, coco, args.work / "distilled", args.work / "teacher", args.parent_iters)
    rows += [{"name": "teacher (s)", "mAP50": teacher["mAP50"], "deploy": deployed(coco, args.work / "teacher", args.max_images)},
             {"name": "distilled", "mAP50": distilled["mAP50"],
              "deploy": deployed(coco, args.work / "distilled" / "model", args.max_images)}]
    for row, model_dir in zip(rows[-2:], (args.work / "teacher", args.work / "distilled" / "model")):
        row.update(model_size(model_dir, coco))
    print(f"\nRTMDet-tiny parent +ft ({args.parent_iters} + {args.finetune_iters} iterations) and its pruned variants "
          f"({args.finetune_iters} fine-tuning iterations each); data seed {DATA_SEED}, palette {PALETTE}; batch 1, default threads, "
          f"p50 ms of one call on {args.max_images} val images, (drop) = the export gate's mAP@0.5 points below PyTorch:")
    head = f"{'variant':12} {'MACs G':>7} {'params M':>8} {'mAP@0.5':>8} " + " ".join(f"{t:>24}" for t in TARGETS)
    print(head)
    base = rows[1]["deploy"]  # the model pruned
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
    print(f"\nTargets: >= {GOAL['macs']:.0%} fewer MACs, >= {GOAL['speedup']}x lower latency (against the model pruned), "
          f"<= {GOAL['drop']} mAP@0.5 points lost: against the model pruned ('parent +ft'), and against 'parent +2ft' "
          f"(the same model trained as long, unpruned):")
    for row in rows[3:-2]:
        fewer = 1 - row["macs"] / rows[1]["macs"]
        speeds = {t: base[t]["p50_ms"] / row["deploy"][t]["p50_ms"] for t in TARGETS
                  if base.get(t, {}).get("p50_ms") and row["deploy"].get(t, {}).get("p50_ms")}
        best = max(speeds.items(), key=lambda kv: kv[1]) if speeds else ("-", 0.0)
        verdicts = []
        for against in rows[1:3]:
            lost = 100 * (against["mAP50"] - row["mAP50"])
            met = fewer >= GOAL["macs"] and best[1] >= GOAL["speedup"] and lost <= GOAL["drop"]
            verdicts.append(f"{lost:.1f} points below {against['name']}: {'met' if met else 'NOT met'}")
        print(f"  {row['name']}: {fewer:.0%} fewer MACs, best speed-up {best[1]:.2f}x ({best[0]}); " + "; ".join(verdicts))
    gain = 100 * (rows[-1]["mAP50"] - parent["mAP50"])
    print(f"  distilled (teacher RTMDet-s, {args.teacher_iters} iterations, mAP@0.5 {rows[-2]['mAP50']:.3f}): "
          f"{gain:+.1f} points over the student trained alone ({args.parent_iters} iterations each, seed 0; target "
          f">= +{GOAL['distill_gain']}): {'met' if gain >= GOAL['distill_gain'] else 'NOT met'}")


if __name__ == "__main__":
    main()
