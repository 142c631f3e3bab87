"""Run a pipeline on this machine with kfp.local (no cluster, no Docker): the embedded default store.

Every task runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``) and its artifacts
land under ``<store>/runs/<pipeline>-<timestamp>/<task>/<output>``.
"""
from __future__ import annotations

import os
from pathlib import Path

from admlops.errors import StepFailed

class PipelineFailed(StepFailed):
    """A task of a local run failed; the message names it and its log."""


def run_local(name: str, params: dict, store: str | Path) -> Path:
    """Run pipeline ``name`` with ``params``; returns the run's directory under ``store/runs``."""
    from kfp import local

    from admlops.pipelines.registry import PIPELINES

    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # task logs and progress stream as they happen
    runs = Path(store).resolve() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    before = set(runs.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(runs), raise_on_error=True)
    if "store" in (PIPELINES[name].component_spec.inputs or {}):
        params = {"store": str(store), **params}
    try:
        PIPELINES[name](**params)
    except RuntimeError as exc:
        raise PipelineFailed(str(exc)) from None
    new = sorted(set(runs.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise RuntimeError(f"kfp.local wrote no run directory under {runs}")
    return new[-1]
