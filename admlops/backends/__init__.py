"""Deployed-model backends, one module per member: ``onnxruntime`` (CPU; CUDA in the deploy image),
``openvino`` (CPU) and ``tensorrt`` (GPU). Export, evaluate and benchmark use them only through
``get_backend(name)`` and the :class:`~admlops.backends.base.Backend` interface.

Adding a backend is one module here that subclasses ``Backend`` and is decorated with ``@register``, plus
its line in ``BACKENDS`` (an admlops.registry.Registry: a name resolves without importing every runtime) and
its tests.
"""
from __future__ import annotations

from admlops.backends.base import (BACKENDS, PRECISIONS, Backend, BuildResult, Calibration, Runner, Shapes,
                                   register)
from admlops.errors import UsageError

BACKEND_MODULES = BACKENDS.modules  # name -> module; bench/deploy_bench.py iterates it


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``; an unknown name is a usage error that lists the known ones."""
    return BACKENDS.get(name)()


def parse_targets(text: str) -> list[tuple[str, str]]:
    """``"onnxruntime:fp32,openvino:int8"`` -> ``[("onnxruntime", "fp32"), ("openvino", "int8")]``; every name is
    checked (an unknown backend or precision is a UsageError naming it)."""
    targets = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        name, sep, precision = item.partition(":")
        if not sep:
            raise UsageError(f"deploy target {item!r}: expected BACKEND:PRECISION, e.g. openvino:int8")
        get_backend(name).check_precision(precision)
        if (name, precision) not in targets:
            targets.append((name, precision))
    if not targets:
        raise UsageError(f"no deploy targets in {text!r}: expected BACKEND:PRECISION[,...]")
    return targets


__all__ = ["BACKENDS", "BACKEND_MODULES", "PRECISIONS", "Backend", "BuildResult", "Calibration", "Runner", "Shapes",
           "get_backend", "parse_targets", "register"]
