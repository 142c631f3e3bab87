"""Shared fixtures: a small synthetic KITTI dataset and its COCO conversion, built once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def kitti_root(tmp_path_factory) -> Path:
    from admlops.components.synth.kitti import synth_kitti

    return synth_kitti(tmp_path_factory.mktemp("kitti") / "kitti", frames=20, seed=7, workers=2)


@pytest.fixture(scope="session")
def coco_dir(kitti_root, tmp_path_factory) -> Path:
    from admlops.components.convert.kitti_coco import kitti_to_coco

    out = tmp_path_factory.mktemp("coco") / "coco"
    kitti_to_coco(kitti_root, out)
    return out


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("PYTHONHASHSEED", os.environ.get("PYTHONHASHSEED", "0"))
