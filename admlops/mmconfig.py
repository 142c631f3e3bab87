"""Pointing an mmengine detection config at a converted dataset (the ``Dataset`` artifact of convert)."""
from __future__ import annotations

import json
from pathlib import Path


def dataset_meta(dataset_dir: str | Path) -> dict:
    """``classes`` and ``palette`` of a converted dataset, in label order."""
    summary = json.loads((Path(dataset_dir) / "summary.json").read_text())
    return {"classes": tuple(summary["categories"]), "palette": [tuple(c) for c in summary["palette"]]}


def use_dataset(cfg, dataset_dir: str | Path, eval_split: str = "val") -> None:
    """Set data roots, annotation files, classes and num_classes of ``cfg`` in place.

    Training reads ``annotations/train.json``; validation and test read ``annotations/<eval_split>.json``.
    """
    root = str(Path(dataset_dir).resolve())
    meta = dataset_meta(root)
    cfg.model.bbox_head.num_classes = len(meta["classes"])
    for name, split in (("train_dataloader", "train"), ("val_dataloader", eval_split), ("test_dataloader", eval_split)):
        ds = cfg[name].dataset
        ds.data_root = root
        ds.ann_file = f"annotations/{split}.json"
        ds.metainfo = dict(classes=meta["classes"], palette=meta["palette"])
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name].ann_file = str(Path(root) / "annotations" / f"{eval_split}.json")
