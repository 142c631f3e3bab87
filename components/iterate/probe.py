"""A class-balanced probe on the detector's own features: the evidence for a class the model has seen too few of.

**Why.** A detector trained on a set where a class is rare learns a head that is biased against it: trained with
34 Cyclists against 276 Pedestrians and 466 Cars (bench/iterate_bench.py's rare-class start set, every object in
any class's colour), RTMDet-tiny's normalised Cyclist score tells the pool's true Cyclists from its true
Pedestrians with a ROC AUC of 0.56 (chance: 0.5), so a selection aimed at Cyclists buys pedestrians nearly as
often. The backbone has seen the wheels all the same: a linear classifier fitted with the classes weighed equally
on the backbone's features of the same train-split boxes tells them apart with an AUC of 0.89 (the neck's
features, trained along with the biased head: 0.55; the finest backbone stage alone does best, the coarsest alone
is at chance, so every stage the neck takes is used; fitted without the class weights: 0.81). This is
classifier re-balancing on a fixed representation (Kang et al., ICLR 2020, "Decoupling Representation and
Classifier for Long-Tailed Recognition": cRT), fitted in seconds at inference time, not a retraining.

**Features** of a box: each stage the backbone hands the neck, RoIAlign (mmcv's op: aligned, ``BINS`` x ``BINS``
bins, two samples per bin) of the box at that stage's stride, flattened and L2-normalised per stage, concatenated
and scaled by 1/sqrt(stages) (unit length, each stage weighing the same).

**Fit**: the exemplars are the labeled boxes of the reference dataset's train split (what the model learned from)
of the model's classes (crowd and ignore regions left out), at most ``MAX_PER_CLASS`` per class (a seeded
sample: memory stays bounded on a large dataset); multinomial logistic regression, each exemplar weighed by 1 /
its class's count (every class weighs the same), an L2 penalty on the weights, full-batch L-BFGS. The penalty is
chosen from ``PENALTIES`` by ``FOLDS``-fold cross-validation stratified by class, then the probe is refitted on
all exemplars: the exemplars of a rare class are few, and how far they generalise is a property of the data, not
a constant. The criterion is the balanced accuracy on the held-out exemplars (ties: the larger penalty), not
their cross-entropy: ``select`` ranks boxes by the probe's probability, so what matters is telling the classes
apart, not calibration. Measured on the rare-class start set above: held-out balanced accuracy 0.73 / 0.79 /
0.82 at penalties 1e-2 / 1e-3 / 1e-4 with the pool's Cyclist-vs-Pedestrian AUC 0.71 / 0.84 / 0.89 alongside,
while the held-out cross-entropy is lowest at 1e-3 (smoother probabilities, a worse ranking). A probe is fitted only
when every class has at least ``FOLDS`` exemplars; otherwise ``fit`` says why and the head's scores stay the
evidence. Its output on a box is a probability vector over the classes (sums to 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = 2
MAX_PER_CLASS = 500  # a linear probe needs no more; features of a ResNet-50 box: 14k floats
FOLDS = 3
PENALTIES = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5)  # on the weighted mean loss (sklearn's C = 1 / (2 x penalty x n))
STEPS = 200


def roi_features(stages, boxes: list[np.ndarray], scale_factors: list[tuple[float, float]], input_width: int) -> list[np.ndarray]:
    """Per image, [n, D] features of its ``boxes`` (x1, y1, x2, y2 in the original image's pixels; the image was
    resized by ``scale_factors`` (w, h) into the batch, ``input_width`` pixels wide) from the backbone ``stages``."""
    import torch
    from mmcv.ops import roi_align

    ref = stages[0]
    rois = [torch.cat([torch.full((len(b), 1), float(i)), torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(-1, 4))
                       * torch.tensor([sx, sy, sx, sy], dtype=torch.float32)], dim=1)
            for i, (b, (sx, sy)) in enumerate(zip(boxes, scale_factors, strict=True))]
    rois = torch.cat(rois).to(device=ref.device, dtype=ref.dtype)
    if not len(rois):
        return [np.zeros((0, 0), dtype=np.float32) for _ in boxes]
    parts = []
    with torch.no_grad():
        for s in stages:
            f = roi_align(s, rois, (BINS, BINS), s.shape[-1] / input_width, 2, "avg", True).flatten(1)
            parts.append(torch.nn.functional.normalize(f, dim=1))
    feats = (torch.cat(parts, dim=1) / np.sqrt(len(stages))).float().cpu().numpy()
    return np.split(feats, np.cumsum([len(b) for b in boxes])[:-1])


@dataclass(frozen=True)
class Probe:
    """A fitted probe: weights [D, C] and biases [C]; ``exemplars`` per class, the ``penalty`` cross-validation
    chose and the balanced accuracy on the held-out folds at it."""

    weight: np.ndarray
    bias: np.ndarray
    exemplars: tuple[int, ...]
    penalty: float
    balanced_accuracy: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """[n, C] class probabilities of ``features`` [n, D]."""
        if not len(features):
            return np.zeros((0, len(self.bias)))
        logits = features.astype(np.float64) @ self.weight + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def sample_exemplars(labels: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    """Indices of ``labels`` kept as exemplars: every box of a class with at most ``MAX_PER_CLASS``, else a seeded
    sample of that many (sorted)."""
    rng = np.random.default_rng(seed)
    keep = [np.flatnonzero(labels == c) for c in range(num_classes)]
    keep = [k if len(k) <= MAX_PER_CLASS else rng.choice(k, MAX_PER_CLASS, replace=False) for k in keep]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def _fit(x, y, w, num_classes: int, penalty: float):
    """Weights and biases minimising the ``w``-weighted cross-entropy + ``penalty`` x |weights|^2 (tensors)."""
    import torch

    weight = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=STEPS, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        value = (torch.nn.functional.cross_entropy(x @ weight + bias, y, reduction="none") * w).sum() / w.sum()
        value = value + penalty * (weight ** 2).sum()
        value.backward()
        return value

    opt.step(loss)
    return weight.detach(), bias.detach()


def fit(features: np.ndarray, labels: np.ndarray, classes: list[str], seed: int = 0) -> tuple[Probe | None, str]:
    """The probe fitted on ``features`` [n, D] with ``labels`` [n] (module doc), or None and the reason it was not."""
    import torch

    counts = np.bincount(labels, minlength=len(classes)) if len(labels) else np.zeros(len(classes), dtype=np.int64)
    few = [f"{c} {n}" for c, n in zip(classes, counts, strict=True) if n < FOLDS]
    if few:
        return None, f"too few labeled boxes in the reference's train split ({', '.join(few)}; at least {FOLDS} each)"
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    w = torch.as_tensor(1.0 / counts[labels], dtype=torch.float64)
    fold = np.empty(len(labels), dtype=np.int64)  # stratified: each class's exemplars dealt round the folds
    rng = np.random.default_rng(seed)
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = np.arange(len(idx)) % FOLDS
    best = (-1.0, PENALTIES[0])
    for penalty in PENALTIES:
        hits = np.zeros(len(labels), dtype=bool)
        for k in range(FOLDS):
            train, held = torch.as_tensor(fold != k), torch.as_tensor(fold == k)
            weight, bias = _fit(x[train], y[train], w[train], len(classes), penalty)
            hits[fold == k] = ((x[held] @ weight + bias).argmax(dim=1) == y[held]).numpy()
        accuracy = float(np.mean([hits[labels == c].mean() for c in range(len(classes))]))
        if accuracy > best[0]:
            best = (accuracy, penalty)
    accuracy, penalty = best
    weight, bias = _fit(x, y, w, len(classes), penalty)
    return Probe(weight.numpy(), bias.numpy(), tuple(int(n) for n in counts), penalty, accuracy), ""
