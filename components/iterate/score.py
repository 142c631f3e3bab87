"""Score every pool frame with every selection signal (``signals.SIGNALS``).

Reads infer's predictions and the current dataset version (convert's layout: ``summary.json`` gives the
categories, the dataset definition and the train split's object counts, which rare-class rarity comes from).
Writes ``scores.jsonl`` (one frame per line: ``{"frame", "signals": {name: {"score", "reason"}}}``, in the order
of predictions.jsonl) and ``summary.json`` (the signals, per-signal mean and max, the dataset, definition,
model and pool, which select and export carry on).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from admlops.components.iterate.predictions import read_predictions, read_reference
from admlops.components.iterate.signals import CONFIDENT, Context, check_signals, evaluate
from admlops.errors import InputError
from admlops.localfs import atomic_dir


def dataset_context(dataset_dir: str | Path) -> dict:
    """Categories, definition name and train-split object counts of a converted dataset (its summary.json)."""
    path = Path(dataset_dir) / "summary.json"
    if not path.is_file():
        raise InputError(path, "not a converted dataset (convert's output): summary.json is missing")
    summary = json.loads(path.read_text())
    try:
        counts = {c: int(summary["objects"]["train"].get(c, 0)) for c in summary["categories"]}
        return {"categories": list(summary["categories"]), "definition": summary["definition"], "class_counts": counts}
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(path, f"expected categories, definition and objects.train counts ({exc})") from None


def score(predictions: str | Path, dataset: str | Path, out: str | Path, signals: list[str] | None = None,
          confident: float = CONFIDENT) -> dict:
    """Score infer's ``predictions`` against the current ``dataset`` (a converted dataset directory) with
    ``signals`` (default: all); publishes ``out/scores.jsonl`` and ``out/summary.json``; returns the summary."""
    names = check_signals(signals)
    preds, pred_summary = read_predictions(predictions)
    data = dataset_context(dataset)
    classes = pred_summary["classes"]
    if list(classes) != data["categories"]:
        raise InputError(Path(dataset) / "summary.json", f"the dataset's categories {data['categories']} are not the "
                         f"model's classes {list(classes)}: score a pool against the dataset the model was trained for")
    ctx = Context.build(classes, data["class_counts"], read_reference(predictions), confident)
    values = {n: [] for n in names}
    with atomic_dir(out) as tmp, open(tmp / "scores.jsonl", "w") as f:
        for pred in tqdm(preds, desc="score", unit="frame"):
            scores = {n: evaluate(n, pred, ctx) for n in names}
            for n, s in scores.items():
                values[n].append(s.value)
            f.write(json.dumps({"frame": pred.frame, "signals": {n: {"score": s.value, "reason": s.reason}
                                                                 for n, s in scores.items()}}) + "\n")
        summary = {
            "signals": names, "frames": len(preds), "confident": confident,
            "stats": {n: {"mean": float(np.mean(v)) if v else 0.0, "max": float(np.max(v)) if v else 0.0}
                      for n, v in values.items()},
            "dataset": str(dataset), "definition": data["definition"], "class_counts": data["class_counts"],
            "reference_frames": len(ctx.reference_frames), "predictions": str(predictions),
            "model": pred_summary.get("model"), "pool": pred_summary.get("pool"), "classes": list(classes),
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def read_scores(scores_dir: str | Path) -> tuple[list[dict], dict]:
    """score's per-frame records and its summary."""
    path = Path(scores_dir) / "scores.jsonl"
    if not path.is_file():
        raise InputError(path, "not a scores directory (score's output): scores.jsonl is missing")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records, json.loads((Path(scores_dir) / "summary.json").read_text())
