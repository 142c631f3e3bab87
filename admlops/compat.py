"""Every compatibility shim between torch 2.13 and the OpenMMLab 1.x/3.x stack, in one place.

``apply()`` installs them once per process; every step that touches torch calls it first.
Each shim has a test (tests/test_compat.py) that fails if the shim is removed or stops being needed.

1. ``torch.onnx.export`` defaults to the dynamo exporter since torch 2.9. mmdeploy's rewriters patch
   the TorchScript exporter, so its exports break; we default ``dynamo=False`` (an explicit
   ``dynamo=True`` from a caller still wins).
2. ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and mmengine 0.10.7 checkpoints
   carry a ``message_hub`` with mmengine and numpy objects, so loading them fails. Instead of turning
   the safe loader off (``weights_only=False`` unpickles arbitrary code from whatever bucket a
   checkpoint came from) we allowlist exactly the types mmengine checkpoints contain.
4. mmengine 0.10.7 starts every ``launcher='pytorch'`` process with ``torch.cuda.set_device``, which a CPU
   build of torch lacks, so DDP on CPU (gloo) cannot start; without CUDA we initialise the process group
   alone (the model is wrapped with ``device_ids=None``, as torch's DDP wants for CPU modules: train.py).
3. mmdet3d 1.4's GT-database sampler (ObjectSample augmentation) builds an array with ``dtype=np.long``,
   an alias numpy 1.24 removed; we restore it as ``np.int64`` (what it meant) when it is missing.
"""
from __future__ import annotations

import builtins
import functools

_applied = False


def _onnx_export_legacy_default() -> None:
    import torch.onnx

    original = torch.onnx.export
    if getattr(original, "_admlops_shim", False):
        return

    @functools.wraps(original)
    def export(*args, dynamo: bool = False, **kwargs):
        return original(*args, dynamo=dynamo, **kwargs)

    export._admlops_shim = True
    torch.onnx.export = export


def mmengine_checkpoint_globals() -> list:
    """The non-tensor types inside an mmengine 0.10.7 checkpoint (measured on checkpoints it wrote)."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    return [
        HistoryBuffer,
        np.core.multiarray._reconstruct,
        np.core.multiarray.scalar,
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),
        type(np.dtype(np.float32)),
        type(np.dtype(np.int64)),
        type(np.dtype(np.int32)),
        # numpy pickles its dtype classes through getattr(module, name); the unpickler still refuses to
        # call anything that getattr returns unless it is allowlisted too.
        builtins.getattr,
    ]


def _allow_mmengine_checkpoints() -> None:
    import torch.serialization

    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())


def _numpy_long_alias() -> None:
    import numpy as np

    if "long" not in np.__dict__:
        np.long = np.int64


def _mmengine_cpu_ddp() -> None:
    import mmengine.dist.utils as dist_utils
    import torch

    original = dist_utils._init_dist_pytorch
    if getattr(original, "_admlops_shim", False):
        return

    @functools.wraps(original)
    def init(backend, init_backend="torch", **kwargs):
        if torch.cuda.is_available() or init_backend != "torch":
            return original(backend, init_backend=init_backend, **kwargs)
        torch.distributed.init_process_group(backend=backend, **kwargs)

    init._admlops_shim = True
    dist_utils._init_dist_pytorch = init


def apply() -> None:
    """Install all shims (idempotent)."""
    global _applied
    if _applied:
        return
    _onnx_export_legacy_default()
    _allow_mmengine_checkpoints()
    _numpy_long_alias()
    _mmengine_cpu_ddp()
    _applied = True
