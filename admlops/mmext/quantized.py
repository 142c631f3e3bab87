"""A detector trained with int8 in the loop (quantization-aware training) and exported as a Q/DQ graph.

    model = dict(type='QuantizedDetector', int8=dict(detector='RTMDet', keep_float=[...], weight_bits=8),
                 <the detector's own keys>)

``QuantizedDetector`` builds ``int8['detector']`` from the other keys (so ``bbox_head``, ``test_cfg`` ... stay where
every tool reads them; ``PrunedDetector`` nests, its own ``detector`` and ``channels`` among them) and makes every
``nn.Conv2d`` outside ``keep_float`` a :class:`QuantConv2d`: the convolution as it is, plus one buffer, the
calibrated range of its input (``act_amax``). The built object is the detector itself (mmdeploy's rewrites, keyed
by its class, apply) and the checkpoint's weights load into it as into any model.

A ``QuantConv2d`` computes int8's arithmetic in training, evaluation and export alike: its input fake-quantized per
tensor (signed symmetric int8, scale ``act_amax / 127``, values beyond it clipped) and its weights per output
channel (signed symmetric int8, scale ``max |w| / 127`` of each channel; with ``weight_bits=7``, ``max |w| / 63``:
the weights take the integers -63..63 only, so a CPU without VNNI, whose int8 kernels add two u8 x s8 products in
a saturating 16-bit sum, cannot overflow: 2 x 255 x 63 < 32767, admlops/cpu.py), the gradients passed straight through
inside the range (the straight-through estimator of ``torch.fake_quantize_*``). This is the arithmetic of TensorRT's
explicit quantization and of ONNX's QuantizeLinear/DequantizeLinear: exported at opset 13, each becomes a Q/DQ pair
with its scale a constant. So the model is an int8 model wherever it runs: ``evaluate`` measures its int8 accuracy,
its export is the Q/DQ graph, and its int8 targets are gated against what PyTorch computed (:func:`float_convs`
turns the quantizers off, for calibration).

A convolution followed by a BatchNorm (mmcv's ``ConvModule``) keeps the norm in training; a per-channel weight
scale is the one that survives folding it (the norm scales each output channel, and its scale with it), so the
deployed graph's backends fold it into the int8 weights unchanged (TensorRT, OpenVINO) or apply it after the
convolution (ONNX Runtime). ``ConvTranspose2d`` and the other layers stay float, as in post-training quantization.

components/qat writes such configs and calibrates ``act_amax`` (:func:`calibrate`) before fine-tuning.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from mmengine.registry import MODELS
from torch import nn

QMIN, QMAX = -128, 127  # signed int8, zero point 0 (symmetric scale amax / 127): ONNX's and TensorRT's int8
_float = False


@contextlib.contextmanager
def float_convs():
    """Within it, every QuantConv2d computes in float (what calibration measures the ranges on)."""
    global _float
    before, _float = _float, True
    try:
        yield
    finally:
        _float = before


def is_quantized(model_cfg) -> bool:
    """Whether a model config (an mmengine Config) builds a QuantizedDetector: an int8 model."""
    return model_cfg.model.get("type") == "QuantizedDetector"


def dequantize(model: nn.Module) -> nn.Module:
    """``model`` with its QuantConv2d made plain ``nn.Conv2d`` again, in place (the float network, the same
    parameters: what tools that know convolutions by their class count)."""
    for module in model.modules():
        if type(module) is QuantConv2d:
            module.__class__ = nn.Conv2d
            del module._buffers["act_amax"]
            module.__dict__.pop("weight_levels", None)
    return model


class QuantConv2d(nn.Conv2d):
    """``nn.Conv2d`` with fake int8 quantization of its input and weights (module doc); made by :func:`quantize`
    from a built convolution, whose parameters it keeps."""

    act_amax: torch.Tensor
    weight_levels = QMAX  # the largest weight integer: 127 (8-bit weights) or 63 (7-bit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _float:
            return super().forward(x)
        w_amax = self.weight.detach().abs().amax(dim=(1, 2, 3)).clamp(min=1e-8)
        if torch.onnx.is_in_onnx_export():  # the scales as constants of the graph (TensorRT needs them so)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # constants are what is meant here
                x = torch.fake_quantize_per_tensor_affine(x, max(float(self.act_amax), 1e-8) / QMAX, 0, QMIN, QMAX)
                w_scale = torch.tensor((w_amax / self.weight_levels).tolist())
                w_zero = torch.tensor([0] * w_scale.shape[0], dtype=torch.int32)
        else:
            scale = (self.act_amax / QMAX).clamp(min=1e-8 / QMAX).to(x.dtype)
            x = torch.fake_quantize_per_tensor_affine(x, scale, torch.zeros((), dtype=torch.int32, device=x.device),
                                                      QMIN, QMAX)
            w_scale, w_zero = w_amax / self.weight_levels, torch.zeros_like(w_amax, dtype=torch.int32)
        w = torch.fake_quantize_per_channel_affine(self.weight, w_scale, w_zero, 0, QMIN, QMAX)
        return self._conv_forward(x, w, self.bias)


def quantize(model: nn.Module, keep_float: list[str] = (), weight_bits: int = 8) -> list[str]:
    """Make every ``nn.Conv2d`` of ``model`` not under a ``keep_float`` name a QuantConv2d with ``weight_bits`` (8 or
    7) weights (in place, parameters kept, ``act_amax`` 0 until calibrated); returns the names of the quantized
    convolutions."""
    if weight_bits not in (7, 8):
        raise ValueError(f"int8 weight_bits {weight_bits}: expected 8, or 7 for CPUs without VNNI")
    names = dict(model.named_modules())
    missing = [k for k in keep_float if k not in names]
    if missing:
        raise ValueError(f"int8 keep_float names {', '.join(missing)}, which the detector does not have")
    done = []
    for name, module in names.items():
        if type(module) is nn.Conv2d and not any(name == k or name.startswith(k + ".") for k in keep_float):
            module.__class__ = QuantConv2d
            module.register_buffer("act_amax", torch.zeros((), device=module.weight.device))
            module.weight_levels = 2 ** (weight_bits - 1) - 1
            done.append(name)
    return done


def build_quantized(int8: dict, **cfg) -> nn.Module:
    """``QuantizedDetector``: ``int8['detector']`` built from ``cfg`` in the current scope, its convolutions
    quantized (``int8['keep_float']``: module names kept float; ``int8['weight_bits']``, default 8)."""
    settings = dict(int8)
    model = MODELS.build(dict(type=settings.pop("detector"), **cfg))
    quantize(model, settings.pop("keep_float", []), settings.pop("weight_bits", 8))
    return model


@torch.no_grad()
def calibrate(model: nn.Module, forward, batches, percentile: float = 99.99) -> dict[str, float]:
    """Set each QuantConv2d's ``act_amax`` from ``forward(model, batch)`` over ``batches`` run in float: the mean over
    the batches of the ``percentile`` of the absolute values of its input (100: the maximum). Returns name -> amax."""
    found: dict[str, list[float]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, QuantConv2d):
            def record(mod, args, name=name):
                x = args[0].detach().abs().flatten().float()
                k = max(1, min(x.numel(), round(x.numel() * percentile / 100)))
                found.setdefault(name, []).append(x.kthvalue(k).values.item())
            hooks.append(module.register_forward_pre_hook(record))
    was_training = model.training
    model.eval()
    try:
        with float_convs():
            for batch in batches:
                forward(model, batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    modules = dict(model.named_modules())
    amax = {name: sum(v) / len(v) for name, v in found.items()}
    for name, value in amax.items():
        modules[name].act_amax.fill_(value)
    return amax


MODELS.register_module(name="QuantizedDetector", module=build_quantized, force=True)
