"""Packaged configuration: mmengine model and deploy configs, dataset definitions, cluster profiles.

``resolve(kind, name_or_path)`` is the one way to find any of them: a file path is taken as it is, a bare
name is looked up in ``configs/<kind>/``.
"""
from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent

# kind -> (folder under configs/, file suffixes, what the kind is called in messages)
KINDS = {
    "models": ((".py",), "model config"),
    "deploy": ((".py",), "deploy config"),
    "datasets": ((".yaml", ".yml"), "dataset definition"),
    "cluster": ((".yaml", ".yml"), "cluster profile"),
}


def shipped(kind: str) -> list[str]:
    """The names of the shipped configs of ``kind``."""
    suffixes, _ = KINDS[kind]
    return sorted(p.stem for p in (CONFIG_DIR / kind).iterdir() if p.suffix in suffixes and not p.name.startswith("_"))


def resolve(kind: str, name_or_path: str | Path) -> Path:
    """The file of a ``kind`` config: ``name_or_path`` with a suffix or a path separator is a path (an
    InputError if it does not exist), otherwise a shipped name (a UsageError listing the names if unknown)."""
    from admlops.errors import InputError, UsageError

    suffixes, what = KINDS[kind]
    text = str(name_or_path)
    path = Path(text)
    if path.suffix or "/" in text:
        if not path.is_file():
            raise InputError(path, f"{what} not found")
        return path
    for suffix in suffixes:
        if (CONFIG_DIR / kind / f"{text}{suffix}").is_file():
            return CONFIG_DIR / kind / f"{text}{suffix}"
    raise UsageError(f"unknown {what} {text!r}: expected a path or one of {', '.join(shipped(kind))}")
