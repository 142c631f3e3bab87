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
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from admlops.components.iterate.predictions import read_predictions
from admlops.components.iterate.score import read_scores
from admlops.components.iterate.signals import normalise
from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir

DIVERSITY = 0.5
DRIVER = 0.5  # a signal at or above this value is a reason the frame was chosen
SAMPLE = 2000  # frames sampled to estimate the mean pairwise distance


def greedy(combined: np.ndarray, embeddings: np.ndarray | None, budget: int, diversity: float = DIVERSITY,
           seed: int = 0) -> list[tuple[int, float, float, int | None]]:
    """``budget`` picks as (index, gain, penalty, nearest chosen index or None), in the order taken."""
    n = len(combined)
    if embeddings is None or diversity == 0:
        order = np.argsort(-combined, kind="stable")[:budget]
        return [(int(i), float(combined[i]), 0.0, None) for i in order]
    emb = normalise(embeddings)
    sample = emb[np.random.default_rng(seed).choice(n, min(n, SAMPLE), replace=False)]
    pair = 1.0 - sample @ sample.T
    d_mean = float(pair[~np.eye(len(sample), dtype=bool)].mean()) if len(sample) > 1 else 1.0
    d_mean = max(d_mean, 1e-9)
    max_sim, nearest = np.zeros(n), np.full(n, -1)
    taken = np.zeros(n, dtype=bool)
    picks = []
    for _ in tqdm(range(budget), desc="select", unit="frame", leave=False):
        gain = np.where(taken, -np.inf, combined - diversity * max_sim)
        i = int(np.argmax(gain))
        picks.append((i, float(gain[i]), float(diversity * max_sim[i]), None if nearest[i] < 0 else int(nearest[i])))
        taken[i] = True
        sim = np.clip(1.0 - (1.0 - emb @ emb[i]) / d_mean, 0.0, 1.0)
        nearest = np.where(sim > max_sim, i, nearest)
        max_sim = np.maximum(max_sim, sim)
    return picks


def select(predictions: str | Path, scores: str | Path, out: str | Path, budget: int,
           weights: dict[str, float] | None = None, diversity: float = DIVERSITY) -> dict:
    """Choose ``budget`` frames from score's output ``scores`` (embeddings from infer's ``predictions``);
    publishes ``out/selection.json``: the frames in the order chosen, each with its signals, reasons and rank.
    ``weights`` (signal -> weight, default 1 each) weigh the combined score; ``diversity`` the penalty.

    A budget below 1, a budget above the pool's size and an empty pool are UsageErrors (exit 2)."""
    records, score_summary = read_scores(scores)
    preds, _ = read_predictions(predictions)
    if not records:
        raise UsageError(f"{scores}: the pool is empty: nothing to select")
    if not isinstance(budget, int) or budget < 1:
        raise UsageError(f"budget must be a whole number of frames >= 1, got {budget!r}")
    if budget > len(records):
        raise UsageError(f"budget {budget} is larger than the pool ({len(records)} frames)")
    if diversity < 0:
        raise UsageError(f"diversity must be >= 0, got {diversity}")
    names = score_summary["signals"]
    weights = {n: 1.0 for n in names} | (weights or {})
    unknown = [n for n in weights if n not in names]
    if unknown or any(w < 0 for w in weights.values()) or not sum(weights.values()):
        raise UsageError(f"weights {weights}: expected non-negative weights, not all 0, of the scored signals {names}")
    by_frame = {p.frame: p for p in preds}
    missing = [r["frame"] for r in records if r["frame"] not in by_frame]
    if missing:
        raise InputError(Path(predictions) / "predictions.jsonl", f"frame {missing[0]!r} was scored but has no prediction: "
                         "score and predictions come from different runs")
    values = np.array([[r["signals"][n]["score"] for n in names] for r in records])
    w = np.array([weights[n] for n in names])
    combined = values @ w / w.sum()
    content = [by_frame[r["frame"]].content for r in records]
    emb = content if all(c is not None for c in content) else [by_frame[r["frame"]].embedding for r in records]
    embeddings = np.stack(emb) if all(e is not None for e in emb) else None
    chosen = []
    for rank, (i, gain, penalty, near) in enumerate(greedy(combined, embeddings, budget, diversity), start=1):
        r, p = records[i], by_frame[records[i]["frame"]]
        drivers = [n for n in names if weights[n] and r["signals"][n]["score"] >= DRIVER]
        drivers = drivers or [max((n for n in names if weights[n]), key=lambda n: r["signals"][n]["score"])]
        drivers.sort(key=lambda n: -r["signals"][n]["score"])
        reason = "; ".join(f"{n} {r['signals'][n]['score']:.2f}: {r['signals'][n]['reason']}" for n in drivers)
        if penalty > 0:
            reason += f" (diversity penalty {penalty:.2f}: near {records[near]['frame']})"
        chosen.append({"rank": rank, "frame": r["frame"], "image": p.image, "width": p.width, "height": p.height,
                       "combined": round(float(combined[i]), 6), "gain": round(gain, 6), "penalty": round(penalty, 6),
                       "drivers": drivers, "signals": r["signals"], "reason": reason})
    summary = {
        "budget": budget, "pool_frames": len(records), "signals": names, "weights": weights, "diversity": diversity,
        "method": "greedy maximal marginal relevance: weighted mean of signals minus diversity x similarity to the "
                  "nearest chosen frame", "diversity_used": embeddings is not None and diversity > 0,
        "chosen_by_signal": {n: sum(n in c["drivers"] for c in chosen) for n in names},
        "model": score_summary.get("model"), "pool": score_summary.get("pool"), "dataset": score_summary.get("dataset"),
        "definition": score_summary.get("definition"), "classes": score_summary.get("classes"),
        "predictions": str(predictions), "scores": str(scores), "frames": chosen,
    }
    with atomic_dir(out) as tmp:
        (tmp / "selection.json").write_text(json.dumps(summary, indent=2))
    return summary


def read_selection(selection_dir: str | Path) -> dict:
    path = Path(selection_dir) / "selection.json"
    if not path.is_file():
        raise InputError(path, "not a selection directory (select's output): selection.json is missing")
    return json.loads(path.read_text())
