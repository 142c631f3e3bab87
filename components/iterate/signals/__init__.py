"""Selection signals: why a pool frame is worth labelling. One module per signal, registered by name.

A signal maps one frame's predictions (``FramePrediction``) and what is known about the current dataset
(``Context``) to a ``Score``: a value in [0, 1] (1: label this frame) and a short reason a person can check.
``SIGNALS`` holds them by name (``uncertainty``, ``flip``, ``rare_class``, ``crowding``, ``novelty``), the way
``records.READERS`` holds the dataset readers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from admlops.components.iterate.predictions import FramePrediction
from admlops.registry import Registry

CONFIDENT = 0.3  # a box scoring at least this counts as detected (flip agreement, crowding)


class Score(NamedTuple):
    value: float  # in [0, 1]
    reason: str


@dataclass(frozen=True)
class Context:
    """What signals know beyond the frame: the model's classes, the current dataset's class counts (train split),
    and the current dataset's frame embeddings with their leave-one-out nearest-neighbour distances (sorted)."""

    classes: tuple[str, ...]
    class_counts: dict[str, int] = field(default_factory=dict)
    reference: np.ndarray | None = None  # [N, D], L2-normalised
    reference_frames: tuple[str, ...] = ()
    reference_nn: np.ndarray | None = None  # sorted cosine distance of each reference frame to its nearest other one
    confident: float = CONFIDENT

    @staticmethod
    def build(classes, class_counts: dict[str, int] | None = None, reference: tuple[list[str], np.ndarray] | None = None,
              confident: float = CONFIDENT) -> "Context":
        """A context, with the reference's nearest-neighbour distances computed once (blockwise: N x 1024 at a time)."""
        if reference is None or len(reference[0]) < 2:
            return Context(tuple(classes), dict(class_counts or {}), confident=confident)
        frames, emb = reference
        emb = normalise(emb)
        nn = np.empty(len(emb))
        for lo in range(0, len(emb), 1024):
            dist = 1.0 - emb[lo : lo + 1024] @ emb.T
            dist[np.arange(len(dist)), np.arange(lo, lo + len(dist))] = np.inf  # not itself
            nn[lo : lo + len(dist)] = dist.min(axis=1)
        return Context(tuple(classes), dict(class_counts or {}), emb, tuple(frames), np.sort(nn), confident)

    def rarity(self) -> np.ndarray:
        """Per class, in [0, 1]: (n_min + 1) / (n_c + 1) over the classes' train-split object counts: the rarest
        class is 1, a class with ten times its objects about 0.1; without counts every class is 0."""
        if not self.class_counts:
            return np.zeros(len(self.classes))
        n = np.array([self.class_counts.get(c, 0) for c in self.classes], dtype=np.float64)
        return (n.min() + 1.0) / (n + 1.0)


def normalise(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    emb = np.asarray(emb, dtype=np.float64)
    norm = np.linalg.norm(emb, axis=-1, keepdims=True)
    return np.divide(emb, norm, out=np.zeros_like(emb), where=norm > 0)


Signal = Callable[[FramePrediction, Context], Score]
# in the order reports list them
SIGNALS: Registry[Signal] = Registry("signal", {name: f"admlops.components.iterate.signals.{name}" for name in
                                                 ("uncertainty", "flip", "rare_class", "crowding", "novelty")})
signal = SIGNALS.register  # ``@signal("name")`` in a signal's module


def check_signals(names: list[str] | None) -> list[str]:
    """The signals to compute: ``names`` (each registered, else a UsageError listing them) or all of them."""
    for name in names or []:
        SIGNALS.get(name)
    return list(names or SIGNALS)


def evaluate(name: str, pred: FramePrediction, ctx: Context) -> Score:
    """Signal ``name`` on ``pred``, its value checked to lie in [0, 1] (a signal out of range is a bug)."""
    value, reason = SIGNALS.get(name)(pred, ctx)
    if not 0.0 <= value <= 1.0 or value != value:
        raise AssertionError(f"signal {name} gave {value} for frame {pred.frame}: expected a value in [0, 1]")
    return Score(round(float(value), 6), reason)

