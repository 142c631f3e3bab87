"""The model zoo: model versions (catalog kind ``models``) with lineage, and movable aliases.

Each version's info.json carries a lineage record: the dataset (name, version, manifest sha256), the
config's sha256, the code version, the pipeline run id and the parent model. Aliases
(``candidate``, ``production``, ...) live at ``models/<name>/aliases/<alias>.json`` and every move is
also kept as ``models/<name>/alias-history/<time_ns>-<alias>.json`` (who, when, from, to).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

from admlops import catalog
from admlops.backends.parity import below_floor
from admlops.errors import StepFailed, UsageError
from admlops.objectstore import ObjectStore

ROLES = {"model.pth": "checkpoint", "config.py": "config", "metrics": "metrics", "onnx/": "exported", "work/": "training-state"}


def code_version() -> str:
    """admlops version, plus the git commit when running from a checkout."""
    from admlops import __version__

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+g{commit}" if commit else __version__


def lineage(dataset: dict | None, config_file: str | Path | None, run_id: str = "", parent: str = "") -> dict:
    """The lineage record of a model built from ``dataset`` (a ``Version.ref()``) with ``config_file``."""
    return {
        "dataset": None if dataset is None else {k: dataset[k] for k in ("name", "version", "manifest_sha256")},
        "config_sha256": hashlib.sha256(Path(config_file).read_bytes()).hexdigest() if config_file else None,
        "code_version": code_version(),
        "pipeline_run_id": run_id,
        "parent_model": parent or None,
    }


def publish(store: ObjectStore, name: str, model_dir: str | Path, record: dict, version: str | None = None,
            gates: dict | None = None) -> catalog.Version:
    """Commit ``model_dir`` as a version of ``name`` with its lineage ``record`` and its deploy ``gates`` (the
    export step's gates.json: every backend x precision against PyTorch, and whether all passed)."""
    return catalog.push(store, "models", name, model_dir, version, roles=ROLES, extra={"lineage": record, "gates": gates})


class PromotionBlocked(StepFailed):
    """A version whose gates failed cannot take an alias unless forced (exit 4, like a failed gate)."""


def failed_gates(info: dict) -> list[str]:
    """The failed gates a version's record names (empty when all passed or none were recorded); first, when its
    PyTorch reference is below the floor, that its gates are not meaningful."""
    gates = info.get("gates") or {}
    vacuous = below_floor(gates)
    return [vacuous] * bool(vacuous) + [
        f"{g['backend']} {g['precision']} (drop {g['drop_points']:.2f} > {g['allowed_points']:.2f} points)"
        for g in gates.get("gates", []) if not g["passed"]]


def deployable_targets(info: dict) -> list[str]:
    """The deploy targets (``backend:precision``) whose gates passed, of a version's record; none when the gates
    are not meaningful (PyTorch below the floor)."""
    gates = info.get("gates") or {}
    return [] if below_floor(gates) else [f"{g['backend']}:{g['precision']}" for g in gates.get("gates", []) if g["passed"]]


def resolve(store: ObjectStore, name: str, ref: str) -> str:
    """A version from a version id or an alias name."""
    key = f"models/{name}/aliases/{ref}.json"
    if store.exists(key):
        return json.loads(store.get_bytes(key))["version"]
    return ref


def promote(store: ObjectStore, name: str, version: str, alias: str, who: str | None = None, force: bool = False,
            reason: str = "", per_target: bool = False) -> dict:
    """Point ``alias`` at ``version`` (which must be committed); returns the alias record, which names the deploy
    targets it covers (``targets``: those whose gates passed).

    A version whose recorded gates failed is refused (PromotionBlocked) unless ``force``, which needs a
    ``reason``; both are kept in the alias record and its history, with who and when. With ``per_target`` (the
    everyday pipeline's ``candidate``) a failed gate blocks the alias for that target only: the record lists it
    under ``blocked_targets``, and the alias is refused only when no target passed."""
    info = catalog.show(store, "models", name, version).info  # raises when the version does not exist
    catalog._check_name(alias, "alias")
    failed = failed_gates(info)
    targets = deployable_targets(info)
    blocked = failed if per_target and targets else []  # blocked for their targets, not for the alias
    failed = [] if blocked else failed
    if failed and not force:
        raise PromotionBlocked(f"{name}@{version}: gates failed: {'; '.join(failed)}; not promoted to {alias} "
                               "(override with --force --reason TEXT)")
    if force and not reason.strip():
        raise UsageError("--force needs --reason: say why a model whose gates failed is promoted")
    key = f"models/{name}/aliases/{alias}.json"
    previous = json.loads(store.get_bytes(key))["version"] if store.exists(key) else None
    record = {"alias": alias, "version": version, "previous": previous, "by": who or catalog._who(), "at": time.time()}
    if info.get("gates"):
        record.update(targets=targets, blocked_targets=blocked)
    if force:
        record.update(forced=True, reason=reason, failed_gates=failed)
    store.put_bytes(f"models/{name}/alias-history/{time.time_ns()}-{alias}.json", json.dumps(record).encode())
    store.put_bytes(key, json.dumps(record, indent=2).encode())
    return record


def aliases(store: ObjectStore, name: str) -> dict[str, dict]:
    out = {}
    for key in store.list(f"models/{name}/aliases/"):
        record = json.loads(store.get_bytes(key))
        out[record["alias"]] = record
    return out


def history(store: ObjectStore, name: str) -> list[dict]:
    return sorted((json.loads(store.get_bytes(k)) for k in store.list(f"models/{name}/alias-history/")), key=lambda r: r["at"])
