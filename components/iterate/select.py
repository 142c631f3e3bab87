"""Choose the frames to label under a budget: high combined signal, but not many near-copies of one scene.

Method (greedy maximal marginal relevance): each frame's combined score is the weighted mean of its signals;
frames are taken one at a time by ``combined - diversity * similarity to the nearest frame already chosen``.
Similarity is ``max(0, 1 - d / d_mean)`` over the cosine distance d of the content embeddings (infer.py: the last
backbone stage of the exposure-equalised image, so frames of one condition, such as dark ones, are told apart by
what they show; predictions without them fall back to the appearance embeddings), with d_mean the pool's mean
pairwise distance (so it is scale-free: a near-copy is ~1, a typical other frame ~0).

Why not top-k of one score: ten frames of one confusing scene would all rank at the top and take the budget
for one lesson. Why not fixed per-signal quotas: a signal that flags nothing useful in this pool (say, novelty
against a dataset the pool resembles) would still spend its share. The combined score lets several weak
signals add up, the penalty spreads the budget over distinct scenes, and every choice keeps its reasons: the
signals that drove it (value >= ``DRIVER`` or, failing that, the strongest), their values and reasons, and the
penalty it paid.

**A budget in boxes** (``budget_boxes``, the labeling vendor's unit): every frame costs its predicted boxes
(``target.py``: the objects the model detects, at least 1); frames are taken in the greedy's order while their
boxes fit in what is left, a frame that does not fit is passed over for the next one that does, and selection
stops when none fits (or, with a frame budget too, when that is spent). Without targets the order is the one
above.

**Targets** (``targets``, ``target.py``): the classes the team is short of, each with the share of the chosen
boxes it wants. A target is short while its expected boxes among the chosen frames are below share x the chosen
frames' predicted boxes (before the first pick every target is short). While one is short, a frame's value is its
expected boxes of the short targets (the sum over its objects of the class's share of the object's class scores,
whatever its top class), per predicted box under a budget in boxes, so crowded frames of other classes are not
bought for the one target box they hold; the diversity penalty scales it (value x (1 - diversity x similarity)),
and equal values go to the higher combined score. The pick's driver is ``target``. When no target is short, or
no frame left has evidence of one, the pick is the combined score's as above: without targets, selection is
unchanged.

The selection also counts, per class, the expected boxes of the chosen frames (``target.py``: each predicted box
split among the classes by the class probe's probabilities or the head's normalised class scores, so a class the
model never yet ranks first still shows; ``evidence`` says which)
against what a random pick of the same budget is expected to hold: the pool's expected boxes of the class x the
chosen fraction of the pool's frames (a frame budget) or of its predicted boxes (a budget in boxes).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from admlops.components.iterate.predictions import read_predictions
from admlops.components.iterate.score import read_scores
from admlops.components.iterate.signals import CONFIDENT, normalise
from admlops.components.iterate.target import check_targets, frame_boxes, parse_targets, spec_items
from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir

DIVERSITY = 0.5
DRIVER = 0.5  # a signal at or above this value is a reason the frame was chosen
SAMPLE = 2000  # frames sampled to estimate the mean pairwise distance


class Pick(NamedTuple):
    index: int
    gain: float  # what the frame was chosen by: combined - penalty, or the target value x (1 - diversity x similarity)
    penalty: float  # what the diversity penalty took off
    nearest: int | None  # the chosen frame it is most like (None: none chosen yet, or no embeddings)
    targets: tuple[int, ...]  # the short targets (columns of ``expected``) whose value chose it; () = the signals


def greedy(combined: np.ndarray, embeddings: np.ndarray | None, budget: int | None, diversity: float = DIVERSITY,
           seed: int = 0, cost: np.ndarray | None = None, budget_boxes: int | None = None,
           expected: np.ndarray | None = None, shares: list[float] | None = None) -> list[Pick]:
    """The picks in the order taken, at most ``budget`` frames (None: no frame limit) and, with ``budget_boxes``,
    frames whose ``cost`` (boxes per frame) sums to at most that; ``expected`` [frames, targets] and ``shares``
    [targets]: the targets' expected boxes per frame and wanted shares (module doc)."""
    n = len(combined)
    cost = np.ones(n) if cost is None else np.asarray(cost, dtype=np.float64)
    expected = np.zeros((n, 0)) if expected is None else np.asarray(expected, dtype=np.float64).reshape(n, -1)
    shares = np.asarray(shares if shares is not None else [], dtype=np.float64)
    emb, d_mean = None, 1.0
    if embeddings is not None and diversity > 0 and n:
        emb = normalise(embeddings)
        sample = emb[np.random.default_rng(seed).choice(n, min(n, SAMPLE), replace=False)]
        pair = 1.0 - sample @ sample.T
        d_mean = max(float(pair[~np.eye(len(sample), dtype=bool)].mean()) if len(sample) > 1 else 1.0, 1e-9)
    max_sim, nearest = np.zeros(n), np.full(n, -1)
    taken = np.zeros(n, dtype=bool)
    got, spent, boxes_left = np.zeros(len(shares)), 0.0, np.inf if budget_boxes is None else float(budget_boxes)
    picks: list[Pick] = []
    bar = tqdm(total=budget if budget is not None else None, desc="select", unit="frame", leave=False)
    while budget is None or len(picks) < budget:
        fits = ~taken & (cost <= boxes_left)
        if not fits.any():
            break
        short = got < shares * spent if spent else np.ones(len(shares), dtype=bool)
        value = expected[:, short].sum(axis=1) / (cost if budget_boxes is not None else 1.0)
        target_gain = np.where(fits, value * (1.0 - diversity * max_sim), -np.inf)
        if short.any() and target_gain.max() > 0:
            best = target_gain.max()
            i = int(np.argmax(np.where(fits & (target_gain >= best * (1 - 1e-9)), combined, -np.inf)))
            gain, penalty, drove = float(target_gain[i]), float(value[i] * diversity * max_sim[i]), tuple(np.flatnonzero(short))
        else:
            signal_gain = np.where(fits, combined - diversity * max_sim, -np.inf)
            i = int(np.argmax(signal_gain))
            gain, penalty, drove = float(signal_gain[i]), float(diversity * max_sim[i]), ()
        picks.append(Pick(i, gain, penalty, None if nearest[i] < 0 else int(nearest[i]), tuple(int(t) for t in drove)))
        taken[i] = True
        got += expected[i]
        spent += cost[i]
        boxes_left -= cost[i]
        bar.update()
        if emb is not None:
            sim = np.clip(1.0 - (1.0 - emb @ emb[i]) / d_mean, 0.0, 1.0)
            nearest = np.where(sim > max_sim, i, nearest)
            max_sim = np.maximum(max_sim, sim)
    bar.close()
    return picks


def evidence(pred_summary: dict, probed: bool) -> str:
    """What the per-class expected boxes are made of, in words: the class probe's probabilities (target.py) or the
    head's normalised class scores."""
    fitted = pred_summary.get("probe") or {}
    if probed and "exemplars" in fitted:
        counts = ", ".join(f"{c} {n}" for c, n in fitted["exemplars"].items())
        return (f"the class probe's probabilities (fitted on the reference's labeled boxes: {counts}; held-out balanced "
                f"accuracy {fitted['held_out_balanced_accuracy']:.2f})")
    why = f" (no class probe: {fitted['skipped']})" if "skipped" in fitted else ""
    return f"the head's class scores, normalised{why}"


def _definition_classes(definition: str | None) -> list[str] | None:
    if not definition:
        return None
    from admlops.definition import load_definition

    return [c.name for c in load_definition(definition).categories]


def select(predictions: str | Path, scores: str | Path, out: str | Path, budget: int | None = None,
           weights: dict[str, float] | list[str] | str | None = None, diversity: float = DIVERSITY,
           budget_boxes: int | None = None, targets: dict[str, float] | list[str] | str | None = None) -> dict:
    """Choose frames from score's output ``scores`` (boxes and embeddings from infer's ``predictions``): at most
    ``budget`` frames and/or frames holding at most ``budget_boxes`` predicted boxes; publishes
    ``out/selection.json``: the frames in the order chosen, each with its signals, reasons and rank, and the chosen
    boxes per class against a random pick's. ``weights`` (signal -> weight, or ``SIGNAL=WEIGHT`` items;
    default 1 each) weigh the combined score: the conditions the team wants more of (``novelty=3``: scenes unlike
    the dataset's; ``flip=0``: not the model's left-right inconsistency); ``diversity`` the penalty; ``targets``
    (class -> share, or ``CLASS[=SHARE]`` items) the classes the team is short of (module doc).

    No budget, a budget below 1, a frame budget above the pool's size, a box budget smaller than every pool
    frame's predicted boxes, a target class the dataset definition (or the model) does not have, a share outside
    (0, 1] and an empty pool are UsageErrors (exit 2)."""
    records, score_summary = read_scores(scores)
    preds, pred_summary = read_predictions(predictions)
    if not records:
        raise UsageError(f"{scores}: the pool is empty: nothing to select")
    check_budget(budget, budget_boxes)
    if budget is not None and budget > len(records):
        raise UsageError(f"budget {budget} is larger than the pool ({len(records)} frames)")
    if diversity < 0:
        raise UsageError(f"diversity must be >= 0, got {diversity}")
    names = score_summary["signals"]
    weights = {n: 1.0 for n in names} | (dict(weights) if isinstance(weights, dict) else parse_weights(weights))
    unknown = [n for n in weights if n not in names]
    if unknown or any(w < 0 for w in weights.values()) or not sum(weights.values()):
        raise UsageError(f"weights {weights}: expected non-negative weights, not all 0, of the scored signals {names}")
    classes = list(score_summary.get("classes") or [])
    targets = dict(targets) if isinstance(targets, dict) else parse_targets(targets)
    if targets:
        for name, share in targets.items():  # a dict skips parse_targets' checks: the shares get them here
            if not 0.0 < share <= 1.0:
                raise UsageError(f"target {name}={share}: the share is outside (0, 1]")
        check_targets(targets, classes, _definition_classes(score_summary.get("definition")),
                      score_summary.get("definition") or "")
    by_frame = {p.frame: p for p in preds}
    missing = [r["frame"] for r in records if r["frame"] not in by_frame]
    if missing:
        raise InputError(Path(predictions) / "predictions.jsonl", f"frame {missing[0]!r} was scored but has no prediction: "
                         "score and predictions come from different runs")
    confident = float(score_summary.get("confident", CONFIDENT))
    boxes = [frame_boxes(by_frame[r["frame"]].dets, len(classes), confident) for r in records]
    cost = np.array([b.cost for b in boxes], dtype=np.float64)
    if budget_boxes is not None and budget_boxes < cost.min():
        fewest = int(np.argmin(cost))
        raise UsageError(f"budget of {budget_boxes} boxes is smaller than any pool frame's predicted boxes (the fewest: "
                         f"{int(cost[fewest])}, frame {records[fewest]['frame']}): no frame fits")
    target_idx = [classes.index(t) for t in targets]
    expected = np.array([b.expected()[target_idx] for b in boxes]).reshape(len(boxes), len(target_idx))
    values = np.array([[r["signals"][n]["score"] for n in names] for r in records])
    w = np.array([weights[n] for n in names])
    combined = values @ w / w.sum()
    content = [by_frame[r["frame"]].content for r in records]
    emb = content if all(c is not None for c in content) else [by_frame[r["frame"]].embedding for r in records]
    embeddings = np.stack(emb) if all(e is not None for e in emb) else None
    chosen = []
    picks = greedy(combined, embeddings, budget, diversity, cost=cost, budget_boxes=budget_boxes, expected=expected,
                   shares=list(targets.values()))
    for rank, pick in enumerate(picks, start=1):
        i = pick.index
        r, p = records[i], by_frame[records[i]["frame"]]
        if pick.targets:
            drivers = ["target"]
            per = f" per box ({int(cost[i])} predicted)" if budget_boxes is not None else ""
            parts = [f"{list(targets)[t]} {expected[i, t]:.2f} expected boxes" for t in pick.targets]
            reason = f"target {pick.gain + pick.penalty:.2f}{per}: " + ", ".join(parts)
        else:
            drivers = [n for n in names if weights[n] and r["signals"][n]["score"] >= DRIVER]
            drivers = drivers or [max((n for n in names if weights[n]), key=lambda n: r["signals"][n]["score"])]
            drivers.sort(key=lambda n: -r["signals"][n]["score"])
            reason = "; ".join(f"{n} {r['signals'][n]['score']:.2f}: {r['signals'][n]['reason']}" for n in drivers)
        if pick.penalty > 0:
            reason += f" (diversity penalty {pick.penalty:.2f}: near {records[pick.nearest]['frame']})"
        chosen.append({"rank": rank, "frame": r["frame"], "image": p.image, "width": p.width, "height": p.height,
                       "combined": round(float(combined[i]), 6), "gain": round(pick.gain, 6),
                       "penalty": round(pick.penalty, 6), "boxes": boxes[i].count,
                       "expected": {t: round(float(expected[i, k]), 4) for k, t in enumerate(targets)},
                       "drivers": drivers, "signals": r["signals"], "reason": reason})
    picked = [pick.index for pick in picks]
    pool_by_class = np.sum([b.expected() for b in boxes], axis=0)
    chosen_by_class = np.sum([boxes[i].expected() for i in picked], axis=0)
    pool_boxes, chosen_boxes = int(sum(b.count for b in boxes)), int(sum(boxes[i].count for i in picked))
    fraction = (chosen_boxes / pool_boxes if pool_boxes else 0.0) if budget_boxes is not None else len(picked) / len(records)
    by_class = {}
    for k, c in enumerate(classes):
        at_random = float(pool_by_class[k]) * fraction
        by_class[c] = {"chosen": round(float(chosen_by_class[k]), 2), "random": round(at_random, 2),
                       "pool": round(float(pool_by_class[k]), 2),
                       "ratio": round(float(chosen_by_class[k]) / at_random, 3) if at_random > 0 else None}
    method = ("greedy maximal marginal relevance: weighted mean of signals minus diversity x similarity to the nearest "
              "chosen frame")
    if targets:
        method = (f"targets first (expected target boxes{' per predicted box' if budget_boxes is not None else ''} x "
                  f"(1 - diversity x similarity) while a target is short of its share), then {method}")
    summary = {
        "budget": budget, "budget_boxes": budget_boxes, "targets": targets, "pool_frames": len(records),
        "signals": names, "weights": weights, "diversity": diversity, "method": method,
        "diversity_used": embeddings is not None and diversity > 0, "confident": confident,
        "chosen_by_signal": {n: sum(n in c["drivers"] for c in chosen) for n in names}
        | ({"target": sum("target" in c["drivers"] for c in chosen)} if targets else {}),
        "boxes": {"chosen": chosen_boxes, "pool": pool_boxes, "random": round(pool_boxes * fraction, 2)},
        "evidence": evidence(pred_summary, any(p.dets.probe_scores is not None for p in preds)),
        "by_class": by_class,
        "model": score_summary.get("model"), "pool": score_summary.get("pool"), "dataset": score_summary.get("dataset"),
        "definition": score_summary.get("definition"), "classes": score_summary.get("classes"),
        "predictions": str(predictions), "scores": str(scores), "frames": chosen,
    }
    with atomic_dir(out) as tmp:
        (tmp / "selection.json").write_text(json.dumps(summary, indent=2))
    return summary


def check_budget(budget: int | None, budget_boxes: int | None) -> None:
    """A budget in frames and/or in boxes (None: that limit unused), each a whole number >= 1; else a UsageError."""
    if budget is None and budget_boxes is None:
        raise UsageError("no budget: give a budget in frames or boxes (budget, budget_boxes) or both")
    if budget is not None and (not isinstance(budget, int) or budget < 1):
        raise UsageError(f"budget must be a whole number of frames >= 1, got {budget!r}")
    if budget_boxes is not None and (not isinstance(budget_boxes, int) or budget_boxes < 1):
        raise UsageError(f"budget in boxes must be a whole number of boxes >= 1, got {budget_boxes!r}")


def parse_weights(specs: list[str] | str | None) -> dict[str, float]:
    """``SIGNAL=WEIGHT`` items (a list, or one comma-separated string: the pipeline parameter) as signal -> weight;
    a malformed item, a weight that is not a finite number >= 0 and a signal named twice are UsageErrors naming it
    (select checks the names against the scored signals)."""
    weights: dict[str, float] = {}
    for item in spec_items(specs):
        name, sep, value = (x.strip() for x in item.partition("="))
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name or not math.isfinite(weight) or weight < 0:
            raise UsageError(f"weight {item!r}: expected SIGNAL=WEIGHT with WEIGHT a number >= 0")
        if name in weights:
            raise UsageError(f"signal {name!r} is weighed twice")
        weights[name] = weight
    return weights


def read_selection(selection_dir: str | Path) -> dict:
    path = Path(selection_dir) / "selection.json"
    if not path.is_file():
        raise InputError(path, "not a selection directory (select's output): selection.json is missing")
    return json.loads(path.read_text())
