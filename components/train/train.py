"""Train an mmdet detector with mmengine's Runner on a converted dataset.

Output layout (the ``Model`` artifact that evaluate and export read)::

    config.py          the full, resolved mmengine config the model was trained with
    model.pth          weights + metadata only (loads with torch's safe weights_only loader)
    train_log.json     one JSON object per logged iteration (loss, lr, time)
    work/              mmengine's work dir: the last full checkpoint (for resuming) and logs
"""
from __future__ import annotations

import json
from pathlib import Path

from admlops import compat
from admlops.mmconfig import dataset_meta, use_dataset
from admlops.localfs import atomic_dir


def _set_max_iters(cfg, max_iters: int) -> None:
    """Change the schedule length, stretching every scheduler's [begin, end) window to match."""
    scale = max_iters / cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.default_hooks.logger.interval = min(cfg.default_hooks.logger.interval, max_iters)
    for sched in cfg.param_scheduler:
        begin = min(round(sched.get("begin", 0) * scale), max_iters - 1)
        end = max(round(sched.get("end", max_iters / scale) * scale), begin + 1)
        sched.update(begin=begin, end=end)
        if "T_max" in sched:
            sched["T_max"] = end - begin


def publish_weights(checkpoint: str | Path, dest: str | Path, meta: dict) -> None:
    """Write a weights-only checkpoint: the state dict and plain-typed metadata, no optimizer or history."""
    import torch

    state = torch.load(checkpoint, map_location="cpu")  # our own fresh checkpoint; compat allowlists its types
    torch.save({"state_dict": state["state_dict"], "meta": meta}, dest)


def train(
    dataset_dir: str | Path,
    out: str | Path,
    config: str = "rtmdet_tiny_kitti",
    max_iters: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
) -> dict:
    """Train ``config`` on ``dataset_dir`` and publish the model directory at ``out``; returns a summary."""
    compat.apply()
    from mmengine.config import Config
    from mmengine.runner import Runner

    from admlops.configs import model_config

    cfg = Config.fromfile(model_config(config))
    use_dataset(cfg, dataset_dir)
    if max_iters:
        _set_max_iters(cfg, max_iters)
    if batch_size:
        cfg.train_dataloader.batch_size = batch_size
    cfg.randomness = dict(seed=seed)
    cfg.launcher = "none"
    with atomic_dir(out) as tmp:
        cfg.work_dir = str(tmp / "work")
        runner = Runner.from_cfg(cfg)
        runner.train()
        last = Path((tmp / "work" / "last_checkpoint").read_text().strip())
        iters = cfg.train_cfg.max_iters
        meta = {"iter": iters, "config": str(config), "seed": seed, "dataset_meta": dataset_meta(dataset_dir)}
        publish_weights(last, tmp / "model.pth", meta)
        # The dumped config must not point into the scratch directory that is renamed on publish.
        cfg.work_dir = "work"
        cfg.dump(str(tmp / "config.py"))
        logs = sorted((tmp / "work").glob("*/vis_data/scalars.json"))
        records = [json.loads(line) for line in logs[-1].read_text().splitlines()] if logs else []
        (tmp / "train_log.json").write_text(json.dumps(records))
        (tmp / "work" / "last_checkpoint").write_text(str(Path(out) / "work" / last.name))
        losses = [r["loss"] for r in records if "loss" in r]
        summary = {"iterations": iters, "final_loss": losses[-1] if losses else None, "first_loss": losses[0] if losses else None}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
