"""Local files: publishing step outputs, and the content digest of a file.

Outputs are published atomically: a step writes into a hidden sibling directory and renames it
into place only when everything is written, so a failed step leaves nothing a later step would read.
``file_sha256`` is the one SHA-256 of a file's content (the catalog's object keys, merge's duplicate images,
the deploy backends' ONNX digests).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``final`` when the block finishes without error.

    An existing ``final`` is replaced (KFP creates empty artifact directories before a step runs).
    On error the scratch directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link ``src`` to ``dst`` when both are on one filesystem, else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of the file's content, hex; read in 1 MiB chunks, so a large file is never held whole."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
