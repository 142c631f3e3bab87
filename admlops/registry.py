"""One shape for every set of pluggable parts that a name picks: a :class:`Registry`.

A registry knows its members' names up front, each with the module that registers it, so a name resolves (or is
refused) without importing every member; the module is imported on the first ``get`` of one of its names::

    READERS = Registry("dataset format", {"coco": "admlops.components.convert.readers.coco", ...})

    @READERS.register("coco")          # in that module
    def read_coco(...): ...

    READERS.get("coco")                # imports the coco module once, returns read_coco
    READERS.get("pascal")              # UsageError: unknown dataset format 'pascal': expected one of coco, ...
    READERS.names()                    # ("coco", ...): nothing imported

Adding a member is its module plus one line in its registry's map. Registries of this shape: the deploy backends
(``admlops.backends.base.BACKENDS``), the dataset readers (``components/convert/records.READERS``), the selection
signals (``components/iterate/signals.SIGNALS``) and the labeling-tool formats
(``components/iterate/formats.FORMATS``). Iterating a registry yields its names.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, Mapping, TypeVar

from admlops.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Members of one kind by name. ``kind`` names them in errors (``"deploy backend"``); ``modules`` maps each
    name to the module that registers it, in the order ``names()`` lists them."""

    def __init__(self, kind: str, modules: Mapping[str, str]):
        self.kind = kind
        self.modules = dict(modules)
        self._members: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: registers what it decorates as ``name``."""

        def add(member: T) -> T:
            self._members[name] = member
            return member

        return add

    def names(self) -> tuple[str, ...]:
        """Every member's name, without importing any: the map's, then any registered outside it."""
        return tuple(self.modules) + tuple(n for n in self._members if n not in self.modules)

    def get(self, name: str) -> T:
        """The member registered as ``name``, its module imported on first use; an unknown name is a UsageError
        that names it and lists the known ones."""
        if name not in self._members:
            if name not in self.modules:
                raise UsageError(f"unknown {self.kind} {name!r}: expected one of {', '.join(self.names())}")
            importlib.import_module(self.modules[name])
            if name not in self._members:  # a map entry whose module registers something else: a bug, not a usage error
                raise LookupError(f"{self.modules[name]} registers no {self.kind} {name!r}")
        return self._members[name]

    def __iter__(self):
        """The names, as a dict iterates its keys (``list(REGISTRY)``, ``for name in REGISTRY``)."""
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.names()
