"""Rare-class presence: a frame showing a class the current dataset has few objects of.

Each class's rarity is its inverse frequency in the current dataset version's train split, scaled so the rarest
class is 1 (``Context.rarity``). A box contributes its class score times that class's rarity (with per-class
vectors, every class of the box: a box that may be a Cyclist counts as a possible Cyclist); the frame scores its
best contribution.
"""
from __future__ import annotations

import numpy as np

from admlops.components.iterate.predictions import FramePrediction
from admlops.components.iterate.signals import Context, Score, signal


@signal("rare_class")
def rare_class(pred: FramePrediction, ctx: Context) -> Score:
    d = pred.dets
    if not ctx.class_counts:
        return Score(0.0, "no class counts of the current dataset")
    if not len(d.scores):
        return Score(0.0, "no boxes")
    rarity = ctx.rarity()
    if d.class_scores is not None:
        contrib = d.class_scores * rarity[None, :]
    else:
        contrib = np.zeros((len(d.scores), len(ctx.classes)))
        contrib[np.arange(len(d.scores)), d.labels] = d.scores * rarity[d.labels]
    i, k = np.unravel_index(int(np.argmax(contrib)), contrib.shape)
    name = ctx.classes[k]
    score = d.class_scores[i, k] if d.class_scores is not None else d.scores[i]
    return Score(float(contrib[i, k]), f"box {i}: {name} {score:.2f}, rarity {rarity[k]:.2f} "
                 f"({ctx.class_counts.get(name, 0)} {name} objects in the train split)")
