"""Crowding: many detected objects, and objects overlapping each other (occlusion), make a frame hard.

With n boxes scoring at least ``Context.confident`` of which m overlap another one (IoU above ``OVERLAP``), the
effective count n + m (an overlapping box counts twice) maps to n_eff / (n_eff + ``HALF``): 0 for an empty frame,
0.5 at ``HALF``, towards 1 for a crowded street.
"""
from __future__ import annotations

import numpy as np

from admlops.components.iterate.predictions import FramePrediction
from admlops.geometry import box_iou
from admlops.components.iterate.signals import Context, Score, signal

HALF = 8.0  # effective box count that scores 0.5
OVERLAP = 0.1  # IoU above which two boxes overlap


@signal("crowding")
def crowding(pred: FramePrediction, ctx: Context) -> Score:
    d = pred.dets.confident(ctx.confident)
    n = len(d.scores)
    iou = box_iou(d.boxes, d.boxes)
    np.fill_diagonal(iou, 0.0)
    overlapping = int((iou > OVERLAP).any(axis=1).sum()) if n else 0
    eff = n + overlapping
    return Score(eff / (eff + HALF), f"{n} boxes scoring >= {ctx.confident:g}, {overlapping} overlapping another")
