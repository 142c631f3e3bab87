"""What every int8 calibration set shares, whatever the task builds it from (admlops.tasks: ``calibration_set``,
train images for a 2D detector, voxelized train scans for a 3D one): how many inputs by default and how they are
chosen.
"""
from __future__ import annotations

from admlops.errors import UsageError

CALIBRATION_IMAGES = 32  # train inputs (evenly spaced over the split) int8 calibrates on unless told otherwise


def spread(items: list, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (all of them when there are fewer), in order."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def check_count(count: int) -> None:
    if count < 1:
        raise UsageError(f"calibration images: {count}: int8 needs at least one input to calibrate on")
