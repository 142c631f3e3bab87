"""Data transforms the product adds to mmdet's (registered in ``mmdet.registry.TRANSFORMS``)."""
from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LowLight(BaseTransform):
    """Turn a daytime image into an underexposed one, as a camera at night sees it: with probability ``prob``,
    scale the linear intensity by a gain from ``gain_range``, apply a display gamma from ``gamma_range`` and add
    Gaussian read noise of ``noise_std`` (in 0-255 units). Boxes and labels are unchanged; the image stays uint8.

    Randomness comes from numpy's global generator, which mmengine seeds per worker (``randomness.seed``)."""

    def __init__(self, prob: float = 0.5, gain_range: tuple[float, float] = (0.15, 0.5),
                 gamma_range: tuple[float, float] = (1.0, 1.6), noise_std: float = 3.0):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"LowLight: prob must be in [0, 1], got {prob}")
        if not 0.0 < gain_range[0] <= gain_range[1] <= 1.0:
            raise ValueError(f"LowLight: gain_range must satisfy 0 < low <= high <= 1, got {gain_range}")
        self.prob, self.gain_range, self.gamma_range, self.noise_std = prob, tuple(gain_range), tuple(gamma_range), noise_std

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results["img"].astype(np.float32) / 255.0
        gain = np.random.uniform(*self.gain_range)
        gamma = np.random.uniform(*self.gamma_range)
        dark = np.power(img * gain, gamma) * 255.0
        if self.noise_std > 0:
            dark += np.random.normal(0.0, self.noise_std, size=dark.shape)
        results["img"] = np.clip(dark, 0, 255).astype(np.uint8)
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(prob={self.prob}, gain_range={self.gain_range}, "
                f"gamma_range={self.gamma_range}, noise_std={self.noise_std})")
