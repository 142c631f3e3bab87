"""Conversion in shards, the parts every sharded step shares: which items a shard takes (a contiguous range in
dataset order, so the shards' outputs concatenated in shard order are the whole run's) and the check that a merge
has every shard once, put in order."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, TypeVar

from admlops.errors import InputError, UsageError

T = TypeVar("T")


def shard_range(items: Sequence[T], shard: int, shards: int) -> Sequence[T]:
    """Shard ``shard`` of ``shards`` of ``items``: a contiguous range, the ranges of all shards covering every item
    once; a shard index outside 0..shards-1 is a UsageError."""
    if not 0 <= shard < shards:
        raise UsageError(f"shard {shard} of {shards}: expected 0 <= shard < shards")
    return items[shard * len(items) // shards:(shard + 1) * len(items) // shards]


def in_shard_order(outputs: Sequence[str | Path], records: Sequence[dict]) -> list[Path]:
    """The shard outputs sorted by their records' ``shard``; an InputError naming the first unless they are shards
    0..n-1 of n, each once."""
    order = sorted(range(len(outputs)), key=lambda i: records[i]["shard"])
    if [(records[i]["shard"], records[i]["shards"]) for i in order] != [(k, len(outputs)) for k in range(len(outputs))]:
        raise InputError(outputs[0], f"expected shards 0..{len(outputs) - 1} of {len(outputs)}, got "
                         f"{sorted((r['shard'], r['shards']) for r in records)}")
    return [Path(outputs[i]) for i in order]
