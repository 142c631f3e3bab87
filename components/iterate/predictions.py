"""The predictions of a model over an unlabeled pool: what ``infer`` writes and every later step reads.

Layout of a predictions directory::

    predictions.jsonl        one frame per line: frame id, image, size, detections, flipped-image detections
    embeddings.npy           float32 [frames, D]: one L2-normalised appearance embedding per line of
                             predictions.jsonl (novelty)
    content.npy              float32 [frames, D']: one L2-normalised content embedding per line (select's diversity)
    reference.npy            float32 [N, D]: appearance embeddings of the current dataset's train frames (novelty's
                             reference)
    reference_frames.json    the frame ids of reference.npy's rows
    summary.json             classes, model, pool, reference dataset, score threshold, embedding description

Boxes are ``x1, y1, x2, y2`` in pixels of the original image; ``flip`` holds the detections on the horizontally
flipped image mapped back into the original image, so they are comparable box for box.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from admlops.errors import InputError


@dataclass(frozen=True)
class Detections:
    """Boxes [N, 4], their scores [N] and labels [N] (indices into the model's classes), and, where the model's
    head gives them, the per-class score vector of each box [N, C]; where infer fitted a class probe (probe.py),
    its class probabilities of each box [N, C]."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_scores: np.ndarray | None = None
    probe_scores: np.ndarray | None = None

    @staticmethod
    def of(boxes, scores, labels, class_scores=None, probe_scores=None) -> "Detections":
        """Detections from lists or arrays (the shapes normalised, so an empty list is [0, 4])."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores, labels = np.asarray(scores, dtype=np.float64).reshape(-1), np.asarray(labels, dtype=np.int64).reshape(-1)
        return Detections(boxes, scores, labels, _per_box(class_scores, len(boxes)), _per_box(probe_scores, len(boxes)))

    def confident(self, threshold: float) -> "Detections":
        """The detections scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep],
                          *(None if v is None else v[keep] for v in (self.class_scores, self.probe_scores)))

    def to_json(self) -> dict:
        return {"boxes": np.round(self.boxes, 2).tolist(), "scores": np.round(self.scores, 5).tolist(),
                "labels": self.labels.tolist(),
                "class_scores": None if self.class_scores is None else np.round(self.class_scores, 5).tolist()} | (
                   {} if self.probe_scores is None else {"probe_scores": np.round(self.probe_scores, 5).tolist()})

    @staticmethod
    def from_json(d: dict) -> "Detections":
        return Detections.of(d["boxes"], d["scores"], d["labels"], d.get("class_scores"), d.get("probe_scores"))


def _per_box(vectors, n: int) -> np.ndarray | None:
    """Per-box class vectors as [n, C]; no boxes: [0, C], or [0, 0] when C is not known (an empty JSON list)."""
    if vectors is None:
        return None
    v = np.asarray(vectors, dtype=np.float64)
    return v.reshape(n, -1) if v.size else v.reshape(0, v.shape[-1] if v.ndim == 2 else 0)


@dataclass(frozen=True)
class FramePrediction:
    """One pool frame: where its image is, its size, the model's detections on it and on its mirror image, and
    its embeddings (infer.py: appearance and content; None when the predictions were written without them)."""

    frame: str
    image: str
    width: int
    height: int
    dets: Detections
    flip: Detections | None = None
    embedding: np.ndarray | None = field(default=None, compare=False)
    content: np.ndarray | None = field(default=None, compare=False)

    def to_json(self) -> dict:
        return {"frame": self.frame, "image": self.image, "width": self.width, "height": self.height,
                "dets": self.dets.to_json(), "flip": None if self.flip is None else self.flip.to_json()}


def write_predictions(out_dir: Path, preds: Iterable[FramePrediction], summary: dict,
                      reference: tuple[list[str], np.ndarray] | None = None) -> int:
    """Write a predictions directory's files into ``out_dir`` (the caller makes it atomic); returns the frame count."""
    out_dir = Path(out_dir)
    embeddings, contents = [], []
    with open(out_dir / "predictions.jsonl", "w") as f:
        for p in preds:
            f.write(json.dumps(p.to_json()) + "\n")
            embeddings.append(p.embedding)
            contents.append(p.content)
    for name, arrays in (("embeddings.npy", embeddings), ("content.npy", contents)):
        if arrays and all(e is not None for e in arrays):
            np.save(out_dir / name, np.stack(arrays).astype(np.float32))
    if reference is not None:
        (out_dir / "reference_frames.json").write_text(json.dumps(reference[0]))
        np.save(out_dir / "reference.npy", reference[1].astype(np.float32))
    (out_dir / "summary.json").write_text(json.dumps({**summary, "frames": len(embeddings)}, indent=2))
    return len(embeddings)


def read_predictions(pred_dir: str | Path) -> tuple[list[FramePrediction], dict]:
    """The frames of a predictions directory (with their embeddings) and its summary."""
    pred_dir = Path(pred_dir)
    path = pred_dir / "predictions.jsonl"
    if not path.is_file():
        raise InputError(path, "not a predictions directory (infer's output): predictions.jsonl is missing")
    summary = json.loads((pred_dir / "summary.json").read_text())
    embeddings, contents = ((np.load(pred_dir / name) if (pred_dir / name).is_file() else None)
                            for name in ("embeddings.npy", "content.npy"))
    preds = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            d = json.loads(line)
            preds.append(FramePrediction(
                d["frame"], d["image"], int(d["width"]), int(d["height"]), Detections.from_json(d["dets"]),
                None if d.get("flip") is None else Detections.from_json(d["flip"]),
                None if embeddings is None else embeddings[n - 1], None if contents is None else contents[n - 1]))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise InputError(path, f"not a prediction record ({type(exc).__name__}: {exc})", n) from None
    return preds, summary


def read_reference(pred_dir: str | Path) -> tuple[list[str], np.ndarray] | None:
    """The reference dataset's frame ids and embeddings, if infer was given a reference dataset."""
    pred_dir = Path(pred_dir)
    if not (pred_dir / "reference.npy").is_file():
        return None
    return json.loads((pred_dir / "reference_frames.json").read_text()), np.load(pred_dir / "reference.npy")

