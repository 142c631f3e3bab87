"""Detection uncertainty: the frame's least certain box, by score entropy and class margin.

A box's sigmoid class scores are independent yes/no decisions; the binary entropy of a score is 1 bit at 0.5
(the model cannot tell) and 0 at 0 or 1. Where the head gives per-class vectors, the entropy is taken over every
class of the box (a 0.9 Car that is also 0.45 Pedestrian is uncertain), and for a detected box (top score at
least ``Context.confident``) the margin term ``1 - (s1 - s2)`` between its two best classes counts too. The frame
scores its most uncertain box: one confusing object is enough to be worth a label.
"""
from __future__ import annotations

import numpy as np

from admlops.components.iterate.predictions import FramePrediction
from admlops.components.iterate.signals import Context, Score, signal


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) in bits, elementwise; 1 at p = 0.5, 0 at 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


@signal("uncertainty")
def uncertainty(pred: FramePrediction, ctx: Context) -> Score:
    d = pred.dets
    if not len(d.scores):
        return Score(0.0, "no boxes")
    per_class = d.class_scores if d.class_scores is not None else d.scores[:, None]
    entropy = binary_entropy(per_class).max(axis=1)
    margin = np.zeros(len(d.scores))
    if per_class.shape[1] > 1:
        top2 = -np.sort(-per_class, axis=1)[:, :2]
        margin = np.where(top2[:, 0] >= ctx.confident, 1.0 - (top2[:, 0] - top2[:, 1]), 0.0)
    box_u = np.maximum(entropy, margin)
    i = int(np.argmax(box_u))
    if d.class_scores is not None and per_class.shape[1] > 1:
        order = np.argsort(-d.class_scores[i], kind="stable")[:2]
        what = " vs ".join(f"{ctx.classes[k]} {d.class_scores[i, k]:.2f}" for k in order)
    else:
        what = f"{ctx.classes[d.labels[i]]} {d.scores[i]:.2f}"
    return Score(float(box_u[i]), f"box {i} ({what}): entropy {entropy[i]:.2f}, margin term {margin[i]:.2f}")
