"""Flip disagreement: 1 - how well the detections on the image and on its mirror image (mapped back) agree.

Each detected box (score at least ``Context.confident``) of either view is matched to its best same-class box in
the other view; the agreement is the mean of those IoUs (an unmatched box counts 0). A model that is sure of what
it sees gives the same boxes on the mirror image (disagreement 0); one that guesses does not.
"""
from __future__ import annotations

import numpy as np

from admlops.components.iterate.predictions import FramePrediction
from admlops.geometry import box_iou
from admlops.components.iterate.signals import Context, Score, signal


@signal("flip")
def flip_disagreement(pred: FramePrediction, ctx: Context) -> Score:
    if pred.flip is None:
        return Score(0.0, "no flipped-image predictions")
    a, b = pred.dets.confident(ctx.confident), pred.flip.confident(ctx.confident)
    if not len(a.scores) and not len(b.scores):
        return Score(0.0, f"no box scores >= {ctx.confident:g} in either view")
    iou = box_iou(a.boxes, b.boxes) * (a.labels[:, None] == b.labels[None, :])
    best_a = iou.max(axis=1) if len(b.scores) else np.zeros(len(a.scores))
    best_b = iou.max(axis=0) if len(a.scores) else np.zeros(len(b.scores))
    agreement = float(np.concatenate([best_a, best_b]).mean())
    return Score(1.0 - agreement, f"{len(a.scores)} boxes vs {len(b.scores)} on the mirror image, "
                 f"mean matched IoU {agreement:.2f}")
