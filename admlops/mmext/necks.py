"""Model parts the product adds to mmdet's (registered in ``mmdet.registry.MODELS``)."""
from __future__ import annotations

import torch
from mmdet.models.necks import CSPNeXtPAFPN
from mmdet.registry import MODELS
from torch import nn


class SqueezeExcitation(nn.Module):
    """Channel attention: global average pool -> bottleneck -> sigmoid gate per channel (Hu et al., 2018)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1),
                                nn.Sigmoid())

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


@MODELS.register_module()
class SECSPNeXtPAFPN(CSPNeXtPAFPN):
    """CSPNeXtPAFPN (RTMDet's neck) whose every output level passes through squeeze-and-excitation, so the head
    sees channels re-weighted by global context (cheap: two 1x1 convolutions per level; exports to ONNX as
    GlobalAveragePool, Conv and Sigmoid)."""

    def __init__(self, *args, se_reduction: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        levels = len(self.out_convs)
        self.se = nn.ModuleList(SqueezeExcitation(self.out_channels, se_reduction) for _ in range(levels))

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(se(x) for se, x in zip(self.se, super().forward(inputs), strict=True))
