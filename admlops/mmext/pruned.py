"""A pruned architecture as a config: the model the config builds, with the channel counts pruning left.

    model = dict(type='PrunedDetector', detector='RTMDet', channels=[
        dict(module='backbone.stage1.1.main_conv.conv', out_channels=24), ...], <the detector's own keys>)

``PrunedDetector`` builds ``detector`` from the other keys (so ``bbox_head``, ``test_cfg`` ... stay where every tool
reads them), then gives each listed module the recorded sizes and parameters of those shapes; the checkpoint's
weights load into it as into any model. It is registered in mmengine's root registry, so mmdet's and mmdet3d's
scopes both find it, and the built object is the detector itself (mmdeploy's rewrites, keyed by its class, apply).
components/prune writes such configs; ``structure`` records a pruned model against its unpruned build.
"""
from __future__ import annotations

import torch
from mmengine.registry import MODELS
from torch import nn

# the sizes a pruned module can carry, and the parameters and buffers they shape
SIZE_ATTRS = ("in_channels", "out_channels", "groups", "num_features", "num_channels", "in_features", "out_features")


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shapes of ``module``'s own parameters and buffers implied by its sizes."""
    if isinstance(module, nn.modules.conv._ConvNd):
        weight = ((module.in_channels, module.out_channels // module.groups) if module.transposed
                  else (module.out_channels, module.in_channels // module.groups))
        return {"weight": (*weight, *module.kernel_size), "bias": (module.out_channels,)}
    if isinstance(module, nn.modules.batchnorm._NormBase):
        n = (module.num_features,)
        return {"weight": n, "bias": n, "running_mean": n, "running_var": n}
    if isinstance(module, nn.GroupNorm):
        return {"weight": (module.num_channels,), "bias": (module.num_channels,)}
    if isinstance(module, nn.Linear):
        return {"weight": (module.out_features, module.in_features), "bias": (module.out_features,)}
    raise ValueError(f"cannot resize a {type(module).__name__}: only convolutions, batch/group norms and linear "
                     "layers carry pruned sizes")


def resize(module: nn.Module, sizes: dict) -> None:
    """Give ``module`` the ``sizes`` (SIZE_ATTRS) and fresh parameters and buffers of the shapes they imply."""
    for attr, value in sizes.items():
        if attr not in SIZE_ATTRS or not hasattr(module, attr):
            raise ValueError(f"{type(module).__name__} has no size {attr!r} to prune")
        setattr(module, attr, value)
    for name, shape in _shapes(module).items():
        if name in module._parameters and module._parameters[name] is not None:
            old = module._parameters[name]
            module._parameters[name] = nn.Parameter(old.new_zeros(shape), requires_grad=old.requires_grad)
        elif name in module._buffers and module._buffers[name] is not None:
            old = module._buffers[name]
            module._buffers[name] = old.new_ones(shape) if name == "running_var" else old.new_zeros(shape)


def structure(pruned: nn.Module, unpruned: nn.Module) -> list[dict]:
    """The ``channels`` list of a config: each module of ``pruned`` whose sizes differ from ``unpruned``'s (the same
    config built afresh), with the differing sizes."""
    fresh = dict(unpruned.named_modules())
    out = []
    for name, module in pruned.named_modules():
        changed = {a: getattr(module, a) for a in SIZE_ATTRS
                   if hasattr(module, a) and getattr(module, a) != getattr(fresh[name], a)}
        if changed:
            out.append({"module": name, **changed})
    return out


def apply_structure(model: nn.Module, channels: list[dict]) -> nn.Module:
    """``model`` with every module of ``channels`` resized (``structure``'s records)."""
    for record in channels:
        sizes = {k: v for k, v in record.items() if k != "module"}
        try:
            module = model.get_submodule(record["module"])
        except AttributeError:
            raise ValueError(f"the pruned structure names {record['module']!r}, which the detector does not have") from None
        resize(module, sizes)
    return model


def build_pruned(detector: str, channels: list, **cfg) -> nn.Module:
    """``PrunedDetector``: the ``detector`` built from ``cfg`` in the current scope, resized to ``channels``."""
    with torch.no_grad():
        return apply_structure(MODELS.build(dict(type=detector, **cfg)), channels)


MODELS.register_module(name="PrunedDetector", module=build_pruned, force=True)
