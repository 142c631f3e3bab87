"""Deployed-model backends, one module per member: ``onnxruntime`` (CPU; CUDA in the deploy image),
``openvino`` (CPU) and ``tensorrt`` (GPU). Export, evaluate and benchmark use them only through
``get_backend(name)`` and the :class:`~admlops.backends.base.Backend` interface.

Adding a backend is one module here that subclasses ``Backend`` and is decorated with ``@register``, plus
its line in ``BACKENDS`` (an admlops.registry.Registry: a name resolves without importing every runtime) and
its tests.
"""
from __future__ import annotations

from collections.abc import Iterable

from admlops.backends.base import (BACKENDS, PRECISIONS, Backend, BuildResult, Calibration, Runner, Shapes,
                                   register)
from admlops.errors import UsageError


def build_settings(deploy_cfg) -> dict:
    """The deploy config's ``build_settings`` section: how the backends build from the graph (input shapes, each
    backend's options). Deploy configs written before it was named so (exports in older zoo versions) call it
    ``deploy_backends``, which is read in its place."""
    return dict(deploy_cfg.get("build_settings") or deploy_cfg.get("deploy_backends") or {})



def get_backend(name: str) -> Backend:
    """The backend registered as ``name``; an unknown name is a usage error that lists the known ones."""
    return BACKENDS.get(name)()


def parse_targets(text: str | Iterable[str]) -> list[tuple[str, str]]:
    """The one grammar of deploy targets (the pipeline's ``deploy_backends``, export's ``--targets``, benchmark's
    ``--backends``): ``"onnxruntime:fp32,openvino:int8"`` (or those items as a list) -> ``[("onnxruntime", "fp32"),
    ("openvino", "int8")]``, duplicates dropped; every name is checked (an unknown backend or precision, or a bare
    backend name, is a UsageError naming it)."""
    items = text.split(",") if isinstance(text, str) else [t for item in text for t in item.split(",")]
    targets = []
    for item in (t.strip() for t in items):
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


def quantized_targets(chosen: list[tuple[str, str]], explicit: bool) -> list[tuple[str, str]]:
    """The deploy targets of a quantization-aware trained model: int8 ones. Asked for by name, another precision is
    a UsageError; by default, the task's targets at int8 where their backend has it."""
    if explicit:
        if other := [f"{b}:{p}" for b, p in chosen if p != "int8"]:
            raise UsageError(f"deploy targets {', '.join(other)}: a quantization-aware trained model deploys in int8 "
                             "(its graph carries its Q/DQ pairs); ask for BACKEND:int8")
        return chosen
    return list(dict.fromkeys((b, "int8") for b, _ in chosen if "int8" in get_backend(b).precisions))


__all__ = ["BACKENDS", "PRECISIONS", "Backend", "BuildResult", "Calibration", "Runner", "Shapes", "build_settings",
           "get_backend", "parse_targets", "quantized_targets", "register"]
