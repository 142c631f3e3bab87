"""Knowledge distillation as an mmengine model: a student detector trained with its own losses plus two imitation
losses against a frozen teacher (a trained zoo model), built from a config like any detector:

    model = dict(type='DistillingDetector',
                 student=dict(type='RTMDet', ...),                     # the student's own model dict
                 teacher=dict(config='.../config.py', checkpoint='.../model.pth'),
                 feature_weight=1.0,   # imitation of the teacher's neck outputs, level by level
                 logit_weight=1.0,     # imitation of the teacher's class logits, location by location
                 temperature=1.0)

* **Neck imitation** (the Pearson-correlation form of feature distillation, Cao et al., PKD, 2022): each level's
  student and teacher maps are normalised per channel over batch and space (zero mean, unit variance), the student's
  through a 1x1 convolution when the channel counts differ, and compared by mean squared error. Normalising makes
  the loss blind to the two networks' feature scales, so one weight serves teachers of any width.
* **Logit imitation** for dense single-stage heads with sigmoid classifiers (RTMDet, YOLOX): at every location of
  every level, the KL divergence of the student's class probabilities from the teacher's (both at the temperature),
  summed and divided by the teacher's summed top-class probability (its soft count of objects, as the quality
  focal loss divides by the assigned scores), so the background locations do not drown the objects.

mmdet's own ``KnowledgeDistillationSingleStageDetector`` serves one head (GFL's LD head, which takes soft targets
in its loss); this wrapper reads the student's neck and head outputs as its own loss computes them (forward hooks),
so every dense family distils. The teacher is held outside the module tree: it is not in the state dict, the
optimizer or DDP's buckets, stays in eval mode whatever the runner sets, and runs under ``no_grad`` on the student's
preprocessed batch, converted to its own normalisation and channel order. ``student_state`` turns a checkpoint of this wrapper
into the student's own (components/distill publishes the student alone).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn


def _pkd_norm(feat: torch.Tensor) -> torch.Tensor:
    """Per channel, zero mean and unit variance over batch and space."""
    mean = feat.mean(dim=(0, 2, 3), keepdim=True)
    std = feat.std(dim=(0, 2, 3), keepdim=True)
    return (feat - mean) / (std + 1e-6)


def neck_loss(student_feats, teacher_feats) -> torch.Tensor:
    """Mean over levels of half the mean squared error of the normalised maps (levels paired in order)."""
    return sum(F.mse_loss(_pkd_norm(s), _pkd_norm(t)) / 2 for s, t in zip(student_feats, teacher_feats)) / len(student_feats)


def logit_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """The Bernoulli KL divergence from the teacher's sigmoid class probabilities to the student's at ``temperature``
    (cross-entropy less the teacher's own entropy: 0 where they agree), over every location, class and level, divided
    by the teacher's soft count of objects."""
    total, count = 0.0, 0.0
    for s, t in zip(student_logits, teacher_logits):
        target = torch.sigmoid(t / temperature)
        entropy = F.binary_cross_entropy_with_logits(t / temperature, target, reduction="sum")
        total = total + F.binary_cross_entropy_with_logits(s / temperature, target, reduction="sum") - entropy
        count = count + target.amax(dim=1).sum()
    return total * temperature ** 2 / count.clamp(min=1.0)


def student_state(state_dict: dict) -> dict:
    """The student's own state dict out of a ``DistillingDetector``'s (the ``student.`` keys, unprefixed)."""
    return {k[len("student."):]: v for k, v in state_dict.items() if k.startswith("student.")}


def _normalisation(model) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The (mean, std, bgr_to_rgb) a detector's data preprocessor applies (mean 0 and std 1 when it does not)."""
    pre = model.data_preprocessor
    mean = pre.mean if getattr(pre, "_enable_normalize", False) else torch.zeros(3, 1, 1)
    std = pre.std if getattr(pre, "_enable_normalize", False) else torch.ones(3, 1, 1)
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1), bool(getattr(pre, "_channel_conversion", False))


@MODELS.register_module(force=True)
class DistillingDetector(BaseModel):
    """A student detector trained against a frozen teacher (module doc). Predictions and tensors are the student's."""

    def __init__(self, student: dict, teacher: dict, feature_weight: float = 1.0, logit_weight: float = 1.0,
                 temperature: float = 1.0, init_cfg=None, data_preprocessor=None):
        from mmengine.config import Config
        from mmengine.runner import load_checkpoint

        built = MODELS.build(student)
        super().__init__(data_preprocessor=built.data_preprocessor, init_cfg=init_cfg)
        self.student = built
        teacher_cfg = Config.fromfile(teacher["config"])
        model = MODELS.build(teacher_cfg.model)
        load_checkpoint(model, teacher["checkpoint"], map_location="cpu", strict=True, logger="silent")
        model.eval().requires_grad_(False)
        self._teacher = [model]  # a list: outside the module tree (module doc)
        self.feature_weight, self.logit_weight, self.temperature = feature_weight, logit_weight, temperature
        if logit_weight and (not hasattr(built, "bbox_head") or not hasattr(model, "bbox_head")):
            raise ValueError("logit imitation needs two single-stage detectors with dense heads (bbox_head); "
                             "set logit_weight=0 for this pair")
        s_channels, t_channels = self._neck_channels(built), self._neck_channels(model)
        if feature_weight and len(s_channels) != len(t_channels):
            raise ValueError(f"the student's neck has {len(s_channels)} levels and the teacher's {len(t_channels)}: "
                             "neck imitation pairs levels one to one")
        self.adapters = nn.ModuleList(nn.Identity() if s == t else nn.Conv2d(s, t, 1)
                                      for s, t in zip(s_channels, t_channels)) if feature_weight else nn.ModuleList()
        (s_mean, s_std, s_bgr), (t_mean, t_std, t_bgr) = _normalisation(built), _normalisation(model)
        self._to_teacher = (s_mean, s_std, t_mean, t_std, s_bgr != t_bgr)

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    @staticmethod
    def _neck_channels(detector) -> list[int]:
        """The channel count of each neck level, read from one forward of a small blank image."""
        with torch.no_grad():
            was = detector.training
            detector.eval()
            feats = detector.extract_feat(torch.zeros(1, 3, 64, 64))
            detector.train(was)
        return [f.shape[1] for f in feats]

    def _teacher_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        s_mean, s_std, t_mean, t_std, swap = (t.to(inputs) if torch.is_tensor(t) else t for t in self._to_teacher)
        raw = inputs * s_std + s_mean
        if swap:
            raw = raw.flip(1)
        return (raw - t_mean) / t_std

    def loss(self, inputs, data_samples) -> dict:
        teacher = self.teacher
        if next(teacher.parameters()).device != inputs.device:
            teacher.to(inputs.device)
        with torch.no_grad():
            t_feats = teacher.extract_feat(self._teacher_inputs(inputs))
            t_logits = teacher.bbox_head(t_feats)[0] if self.logit_weight else None
        seen = {}  # the student's features and head outputs, as its own loss computes them (one forward)
        student = self.student
        hooks = [(student.neck if student.with_neck else student.backbone).register_forward_hook(
            lambda m, i, out: seen.setdefault("feats", out))]
        if self.logit_weight:
            hooks.append(student.bbox_head.register_forward_hook(lambda m, i, out: seen.setdefault("outs", out)))
        try:
            losses = student.loss(inputs, data_samples)
        finally:
            for hook in hooks:
                hook.remove()
        if self.feature_weight:
            losses["loss_distill_neck"] = self.feature_weight * neck_loss(
                [a(f) for a, f in zip(self.adapters, seen["feats"])], t_feats)
        if self.logit_weight:
            s_logits = seen["outs"][0]
            if [s.shape for s in s_logits] != [t.shape for t in t_logits]:
                raise ValueError("the student's and the teacher's class maps differ in shape "
                                 f"({[tuple(s.shape) for s in s_logits]} vs {[tuple(t.shape) for t in t_logits]}): "
                                 "logit imitation needs the same classes, strides and priors per location")
            losses["loss_distill_logits"] = self.logit_weight * logit_loss(s_logits, t_logits, self.temperature)
        return losses

    def predict(self, inputs, data_samples):
        return self.student.predict(inputs, data_samples)

    def _forward(self, inputs, data_samples=None):
        return self.student._forward(inputs, data_samples)

    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        return self._forward(inputs, data_samples)
