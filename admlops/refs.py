"""References to a dataset or model: one grammar and one resolver for every step and command.

A reference is ``NAME@VERSION`` (a committed version id of the store), ``NAME@ALIAS`` (models only: a zoo alias
such as ``candidate`` or ``production``; an alias wins over a version id of the same name, as ``zoo.resolve``
does) or a local directory. Text with an ``@`` that is no existing path is a reference; anything else is a local
path, taken as it is: the step that reads it names what is wrong with it. Datasets have no aliases:
``NAME@production`` of a dataset is an unknown version.

An unknown name, version or alias is one error, ``UnknownReference`` (a UsageError: exit 2), with one message: the
store's folder of the name, ``no committed version NAME@REF`` and what exists (the name's versions and, for
models, its aliases; or, for an unknown name, the names the store holds).
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Callable, Collection, Hashable, Iterator

from admlops import catalog
from admlops.errors import UsageError
from admlops.objectstore import ObjectStore, open_store

Store = ObjectStore | str | None  # a store, or its URI (None or empty: the default store), opened only when needed

WHAT = {"datasets": "dataset", "models": "model"}
FORMS = {"datasets": "NAME@VERSION", "models": "NAME@VERSION or NAME@ALIAS"}
SHOWN = 10  # the most recent versions an error lists


class UnknownReference(UsageError):
    """``NAME@REF`` names no committed version of the store: an unknown name, version or alias (exit 2)."""


def is_reference(text: str | Path) -> bool:
    """Whether ``text`` names a stored version (it has an ``@`` and is no existing path) rather than a local path."""
    return "@" in str(text) and not Path(text).exists()


def parse(text: str | Path, kind: str, local: bool = False) -> tuple[str, str]:
    """``NAME@REF`` as (name, ref); a UsageError naming the expected forms otherwise (``local``: a directory too)."""
    name, sep, ref = str(text).partition("@")
    if not (name and sep and ref):
        raise _form_error(text, kind, local)
    return name, ref


def _form_error(text: str | Path, kind: str, local: bool) -> UsageError:
    return UsageError(f"{WHAT[kind]} {str(text)!r}: expected {'a directory or ' if local else ''}{FORMS[kind]}")


def find(store: ObjectStore, kind: str, name: str, ref: str) -> str:
    """The committed version id ``name@ref`` names in ``store``: ``ref`` itself or, for a model, the version its
    alias ``ref`` points at. UnknownReference when there is none."""
    catalog._prefix(kind, name, ref)  # a name and ref without '/' (StoreError otherwise), before any key is built
    version = ref
    if kind == "models":
        from admlops import zoo

        version = zoo.resolve(store, name, ref)
    if catalog.committed(store, kind, name, version):
        return version
    raise UnknownReference(_unknown(store, kind, name, ref))


def resolve(store: Store, kind: str, text: str | Path) -> tuple[str, str]:
    """``NAME@REF`` as (name, committed version id): ``parse`` then ``find``."""
    name, ref = parse(text, kind)
    return name, find(_opened(store), kind, name, ref)


def _opened(store: Store) -> ObjectStore:
    return store if isinstance(store, ObjectStore) else open_store(store)


def fetch(store: Store, kind: str, text: str | Path, dest: str | Path,
          directory: bool = False) -> tuple[Path, catalog.Version | None]:
    """``text`` as a local directory: a local path as it is (version None), or the version a reference names
    pulled (every file verified) to ``dest``, with its version. With ``directory``, a local path that is no
    directory is a UsageError naming the forms expected (without, the step reading it says what is wrong)."""
    if not is_reference(text):
        if directory and not Path(text).is_dir():
            raise _form_error(text, kind, local=True)
        return Path(text), None
    store = _opened(store)
    name, version = resolve(store, kind, text)
    return Path(dest), catalog.pull(store, kind, name, version, dest)


@contextlib.contextmanager
def local_copy(store: Store, kind: str, text: str | Path,
               prefix: str = "admlops-src-") -> Iterator[tuple[Path, catalog.Version | None]]:
    """``fetch`` into a scratch directory that lasts for the block (nothing is pulled for a local path)."""
    if not is_reference(text):
        yield Path(text), None
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        yield fetch(store, kind, text, Path(scratch) / WHAT[kind])


@contextlib.contextmanager
def local_shard(store: Store, text: str | Path, frame_of: Callable[[str], Hashable | None],
                frames_of: Callable[[Path], Collection[Hashable]],
                prefix: str = "admlops-src-") -> Iterator[tuple[Path, catalog.Version | None]]:
    """A dataset as one shard's step needs it, for the block: a local path as it is; a dataset version pulled in two
    passes, so a shard's pod downloads its share of the scans and images, not the whole set: first every file that
    belongs to no frame (``frame_of(path)`` is None: labels, calibration, split lists, what the shards are planned
    from) and the folders of all, then the files of the frames ``frames_of(that directory)`` names (the shard's:
    ``frame_of``'s keys)."""
    if not is_reference(text):
        yield Path(text), None
        return
    opened = _opened(store)
    name, version = resolve(opened, "datasets", text)
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        root, more = Path(scratch) / "dataset", Path(scratch) / "frames"
        meta = catalog.pull(opened, "datasets", name, version, root, only=lambda p: frame_of(p) is None)
        folders = {Path(r["path"]).parent for r in catalog.read_manifest(opened, "datasets", name, version)}
        for folder in folders:
            (root / folder).mkdir(parents=True, exist_ok=True)
        wanted = set(frames_of(root))
        catalog.pull(opened, "datasets", name, version, more, only=lambda p: frame_of(p) in wanted)
        for path in more.rglob("*"):
            if path.is_file():
                path.replace(root / path.relative_to(more))
        yield root, meta


@contextlib.contextmanager
def local_model(store: Store, text: str | Path, prefix: str = "admlops-model-") -> Iterator[tuple[Path, str]]:
    """A trained model (``NAME@VERSION`` / ``NAME@ALIAS`` of the zoo, or a train output directory) as a local directory
    holding its config.py and model.pth (an InputError naming a missing one), and its name: ``NAME@VERSION``, or the
    directory."""
    from admlops.errors import InputError

    with local_copy(store, "models", text, prefix=prefix) as (found, version):
        found = Path(found)
        for f in ("config.py", "model.pth"):
            if not (found / f).is_file():
                raise InputError(found / f, "missing: expected a train output directory or a zoo model")
        yield found, f"{version.name}@{version.version}" if version else str(found)


def _listed(items: list[str]) -> str:
    shown = items[-SHOWN:]
    return ", ".join(shown) + (f" (the last {SHOWN} of {len(items)})" if len(items) > SHOWN else "") if items else "none"


def _unknown(store: ObjectStore, kind: str, name: str, ref: str) -> str:
    versions = [v for _, v in catalog.list_versions(store, kind, name)]
    if versions:
        known = f"known versions: {_listed(versions)}"
        if kind == "models":
            from admlops import zoo

            known += f"; aliases: {_listed(sorted(zoo.aliases(store, name)))}"
        else:
            known += "; datasets have no aliases"
    else:
        known = f"no {WHAT[kind]} named {name!r}; known {kind}: {_listed(catalog.names(store, kind))}"
    return f"{store.uri(f'{kind}/{name}/')}: no committed version {name}@{ref} ({known})"
