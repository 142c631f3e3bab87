"""Novelty: how far the frame's embedding is from every frame of the current dataset.

The distance d is the cosine distance to the nearest reference (current dataset) frame. It is judged against the
dataset's own spread: P is the fraction of reference frames whose nearest other reference frame is closer than d.
A frame no more isolated than the dataset's typical frame is not novel; the score rises over the tail,
max(0, (P - ``QUANTILE``) / (1 - ``QUANTILE``)): 0 up to the 90th percentile, 1 beyond every reference frame's
distance. A frame identical to a dataset frame scores 0.
"""
from __future__ import annotations

import numpy as np

from admlops.components.iterate.predictions import FramePrediction
from admlops.components.iterate.signals import Context, Score, normalise, signal

QUANTILE = 0.9


@signal("novelty")
def novelty(pred: FramePrediction, ctx: Context) -> Score:
    if pred.embedding is None:
        return Score(0.0, "no embedding")
    if ctx.reference is None or ctx.reference_nn is None:
        return Score(0.0, "no reference embeddings of the current dataset (at least 2 needed)")
    dist = 1.0 - ctx.reference @ normalise(pred.embedding)
    j = int(np.argmin(dist))
    d = max(float(dist[j]), 0.0)
    p = np.searchsorted(ctx.reference_nn, d, side="left") / len(ctx.reference_nn)
    value = max(0.0, (p - QUANTILE) / (1.0 - QUANTILE))
    return Score(value, f"nearest dataset frame {ctx.reference_frames[j]} at cosine distance {d:.4f}, farther than "
                 f"{100 * p:.0f}% of dataset frames are from their nearest neighbour")
