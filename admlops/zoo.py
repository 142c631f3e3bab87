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


def publish(store: ObjectStore, name: str, model_dir: str | Path, record: dict, version: str | None = None) -> catalog.Version:
    return catalog.push(store, "models", name, model_dir, version, roles=ROLES, extra={"lineage": record})


def resolve(store: ObjectStore, name: str, ref: str) -> str:
    """A version from a version id or an alias name."""
    key = f"models/{name}/aliases/{ref}.json"
    if store.exists(key):
        return json.loads(store.get_bytes(key))["version"]
    return ref


def promote(store: ObjectStore, name: str, version: str, alias: str, who: str | None = None) -> dict:
    """Point ``alias`` at ``version`` (which must be committed); returns the alias record."""
    catalog.show(store, "models", name, version)  # raises when the version does not exist
    catalog._check_name(alias, "alias")
    key = f"models/{name}/aliases/{alias}.json"
    previous = json.loads(store.get_bytes(key))["version"] if store.exists(key) else None
    record = {"alias": alias, "version": version, "previous": previous, "by": who or catalog._who(), "at": time.time()}
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
