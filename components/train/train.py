"""Train a detector with mmengine's Runner: an mmdet config on a converted dataset, or an mmdet3d config on an
mmdet3d data root (admlops.mmconfig.use_dataset tells them apart); one process, or N under torchrun (DDP: gloo
on CPU, nccl on GPU), resumable from checkpoints kept in the run's store.

Output layout (the ``Model`` artifact that evaluate and export read)::

    config.py          the full, resolved mmengine config the model was trained with
    model.pth          weights + metadata only (loads with torch's safe weights_only loader)
    train_log.json     one JSON object per logged iteration (loss, lr, time)
    init_from.json     with ``init_from``: the model it started from and what was loaded, remapped, re-initialised
    work/              mmengine's work dir: the last full checkpoint, logs, the offline W&B run

While training, the work dir is ``.<out>.work`` beside ``out``: a restarted run (the same ``out``) resumes
from its last checkpoint, and with a ``store`` and ``run_id`` every checkpoint is also copied to
``<store>/checkpoints/<run_id>/`` so a run restarted on another machine resumes from there.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from admlops import compat
from admlops.localfs import atomic_dir
from admlops.mmconfig import dataset_meta, merge_cfg_options, use_dataset


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


def work_dir_of(out: str | Path) -> Path:
    out = Path(out).resolve()
    return out.parent / f".{out.name}.work"


def torchrun_command(nproc: int) -> list[str]:
    """The CLI under torchrun with ``nproc`` processes on this node. Inside a Kubeflow Trainer node the runtime
    sets PET_NNODES / PET_NODE_RANK / PET_MASTER_ADDR / PET_MASTER_PORT, which torchrun reads itself; on one
    machine it runs standalone (a free local port)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if "PET_NNODES" not in os.environ:
        cmd.append("--standalone")
    return cmd + ["-m", "admlops.pipelines.cli"]


def launch(nproc: int, args: list[str]) -> int:
    """Run ``admlops <args>`` under torchrun; its exit code (a worker's failure fails the launch). The arguments
    travel in ADMLOPS_ARGV, out of reach of torchrun's own option parser (it would take ``--nproc`` as its
    ``--nproc-per-node``)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", ADMLOPS_ARGV=json.dumps(args))
    return subprocess.run(torchrun_command(nproc), env=env).returncode


class StoreCheckpoints:
    """Copies each checkpoint mmengine saves into ``<store>/checkpoints/<run_id>/`` (and a ``latest`` pointer),
    and brings the latest one back into an empty work dir, so a run resumes wherever it restarts."""

    def __init__(self, store_uri: str, run_id: str, work_dir: Path):
        from admlops.objectstore import open_store

        self.store, self.prefix, self.work_dir = open_store(store_uri), f"checkpoints/{run_id}", work_dir

    def restore(self) -> str | None:
        if (self.work_dir / "last_checkpoint").is_file() or not self.store.exists(f"{self.prefix}/latest"):
            return None
        name = self.store.get_bytes(f"{self.prefix}/latest").decode().strip()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.store.get_file(f"{self.prefix}/{name}", self.work_dir / name)
        (self.work_dir / "last_checkpoint").write_text(str(self.work_dir / name))
        return name

    def hook(self):
        from mmengine.hooks import Hook

        sync = self

        class StoreCheckpointHook(Hook):
            priority = "LOWEST"  # after CheckpointHook has written the file

            def __init__(self):
                self.pushed = None

            def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
                last = Path(runner.work_dir) / "last_checkpoint"
                if runner.rank != 0 or not last.is_file():
                    return
                path = Path(last.read_text().strip())
                if path.name != self.pushed and path.is_file():
                    sync.store.put_file(f"{sync.prefix}/{path.name}", path)
                    sync.store.put_bytes(f"{sync.prefix}/latest", path.name.encode())  # only after the file is whole
                    self.pushed = path.name

        return StoreCheckpointHook()


def is_remote(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def download_dir(uri: str, dest: Path) -> Path:
    """Every object under ``uri`` (an ``s3://bucket/prefix``) into ``dest``; a second call finds it there."""
    from admlops.objectstore import open_store

    if (dest / ".complete").is_file():
        return dest
    store = open_store(uri)
    with atomic_dir(dest) as tmp:
        for key in store.list(""):
            (tmp / key).parent.mkdir(parents=True, exist_ok=True)
            store.get_file(key, tmp / key)
        (tmp / ".complete").write_text(uri)
    return dest


def upload_dir(src: Path, uri: str) -> None:
    from admlops.objectstore import open_store

    store = open_store(uri)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        store.put_file(path.relative_to(src).as_posix(), path)


def train_uri(dataset: str, out: str, **kwargs) -> dict:
    """``train`` with the dataset and/or the output in object storage (``s3://...``), as on the cluster's nodes:
    the dataset is fetched once per node into $ADMLOPS_CACHE (default ~/.cache/admlops), the model is trained
    into a local directory and rank 0 uploads it."""
    import hashlib

    cache = Path(os.environ.get("ADMLOPS_CACHE", Path.home() / ".cache" / "admlops"))
    key = lambda uri: hashlib.sha256(uri.encode()).hexdigest()[:16]  # noqa: E731
    dataset_dir = download_dir(dataset, cache / "datasets" / key(dataset)) if is_remote(dataset) else Path(dataset)
    local_out = cache / "models" / key(out) if is_remote(out) else Path(out)
    summary = train(dataset_dir, local_out, **kwargs)
    if is_remote(out) and int(os.environ.get("RANK", "0")) == 0:
        upload_dir(local_out, out)
    return summary


def train(
    dataset_dir: str | Path,
    out: str | Path,
    config: str = "rtmdet_tiny_kitti",
    max_iters: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    checkpoint_interval: int | None = None,
    store: str = "",
    run_id: str = "",
    wandb: bool = False,
    cfg_options: dict | None = None,
    init_from: str = "",
    init_store: str | None = None,
    hooks: list | None = None,
) -> dict:
    """Train ``config`` on ``dataset_dir`` and publish the model directory at ``out``; returns a summary.

    Under torchrun (WORLD_SIZE > 1) every process trains its shard with DDP and rank 0 publishes.
    ``batch_size`` is per process. ``wandb`` logs through mmengine's WandbVisBackend, offline unless
    WANDB_MODE says otherwise, grouped by ``run_id``. ``cfg_options`` (``parse_cfg_options``) are merged last.
    ``init_from``: start from that model's weights (components/train/init_from.py: a zoo model in ``init_store``,
    default ``store``; a train output or a checkpoint file), not from scratch, at the config's learning rate times
    its ``finetune_lr_factor`` (recorded in init_from.json); a resumed run resumes its own checkpoint instead. ``hooks``: mmengine hooks registered beside the config's (tune's pruning hook)."""
    compat.apply()
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    from admlops.configs import resolve

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    cfg = Config.fromfile(str(resolve("models", config)))
    use_dataset(cfg, dataset_dir)
    if max_iters:
        _set_max_iters(cfg, max_iters)
    if batch_size:
        cfg.train_dataloader.batch_size = batch_size
    if checkpoint_interval:
        cfg.default_hooks.checkpoint.interval = checkpoint_interval
    if init_from:  # a trained model is fine-tuned at the config's fine-tuning rate (before cfg_options: an explicit lr wins)
        cfg.optim_wrapper.optimizer.lr *= cfg.get("finetune_lr_factor", 1.0)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    cfg.randomness = dict(seed=seed)
    cfg.launcher = "pytorch" if world > 1 else "none"
    cfg.env_cfg.dist_cfg = dict(backend="nccl" if torch.cuda.is_available() else "gloo")
    if world > 1 and not torch.cuda.is_available():  # torch's DDP takes CPU modules with device_ids=None only
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None)
    work = work_dir_of(out)
    cfg.work_dir = str(work)
    if wandb:
        import admlops.mmext  # noqa: F401  (registers WandbConfigVisBackend: the config, not the directory's code)

        os.environ.setdefault("WANDB_MODE", "offline")  # nothing leaves the machine unless asked
        cfg.visualizer.vis_backends = [dict(type="LocalVisBackend"), dict(
            type="WandbConfigVisBackend", save_dir=str(work / "wandb"),
            init_kwargs=dict(project="admlops", group=run_id or None, name=f"{run_id or 'local'}-rank{rank}",
                             config=dict(config=str(config), dataset=str(dataset_dir))))]
    sync = StoreCheckpoints(store, run_id, work) if store and run_id else None
    if sync and rank == 0:
        sync.restore()  # the other ranks wait in the rendezvous below, then resume from the same file
    cfg.resume = (work / "last_checkpoint").is_file()
    if init_from and not cfg.resume:
        from admlops.components.train.init_from import describe, initial_weights

        report = initial_weights(cfg, init_from, dataset_meta(dataset_dir, cfg)["classes"], work / f"init.rank{rank}.pth",
                                 store if init_store is None else init_store)
        report["lr"] = cfg.optim_wrapper.optimizer.lr
        cfg.load_from = str(work / f"init.rank{rank}.pth")
        (work / "init_from.json").write_text(json.dumps(report, indent=2))
        print(describe(report), flush=True)
    compat.own_runner_state(cfg)
    runner = Runner.from_cfg(cfg)
    for hook in ([sync.hook()] if sync else []) + list(hooks or ()):
        runner.register_hook(hook)
    runner.train()
    if rank != 0:
        return {"iterations": cfg.train_cfg.max_iters, "rank": rank}
    return _publish(cfg, config, seed, dataset_dir, out, work)


def train_into(staging: Path, out: str | Path, dataset_dir: str | Path, **kwargs) -> dict:
    """``train`` whose published directory is ``staging`` (a step's scratch directory that becomes ``out`` when the
    step commits it): the work dir's last checkpoint is named at its place under ``out``."""
    summary = train(dataset_dir, staging / "trained", **kwargs)
    for item in (staging / "trained").iterdir():
        shutil.move(str(item), staging / item.name)
    (staging / "trained").rmdir()
    last = staging / "work" / "last_checkpoint"
    last.write_text(str(Path(out) / "work" / Path(last.read_text().strip()).name))
    return summary


def finetune_into(staging: Path, out: str | Path, dataset_dir: str | Path, cfg, model, meta: dict, iters: int | None,
                  seed: int, batch_size: int | None, init: dict) -> dict:
    """Publish ``model`` (a step's rebuilt model: ``cfg`` builds it, ``meta`` is its checkpoint's) as a model directory
    at ``staging``, fine-tuned ``iters`` iterations from its weights (None: the config's), or as it is when ``iters``
    is 0; ``init``: what init_from.json says the weights came from (the step's parent model). Returns the
    fine-tune's record."""
    import torch

    start = staging / "start"
    start.mkdir()
    cfg.dump(str(start / "config.py"))
    torch.save({"state_dict": model.state_dict(), "meta": meta}, start / "model.pth")
    if iters == 0:
        for f in ("config.py", "model.pth"):
            shutil.move(str(start / f), staging / f)
        (staging / "train_log.json").write_text("[]")
        summary = {"iterations": 0, "final_loss": None, "first_loss": None}
        (staging / "summary.json").write_text(json.dumps(summary, indent=2))
    else:
        summary = train_into(staging, out, dataset_dir, config=str(start / "config.py"), max_iters=iters, seed=seed,
                             init_from=str(start), batch_size=batch_size)
        init = {**json.loads((staging / "init_from.json").read_text()), **init}
    shutil.rmtree(start)
    (staging / "init_from.json").write_text(json.dumps(init, indent=2))
    return {"iterations": summary["iterations"], "lr": init.get("lr"), "seed": seed}


def _publish(cfg, config: str, seed: int, dataset_dir, out, work: Path) -> dict:
    with atomic_dir(out) as tmp:
        last = Path((work / "last_checkpoint").read_text().strip())
        iters = cfg.train_cfg.max_iters
        meta = {"iter": iters, "config": str(config), "seed": seed, "dataset_meta": dataset_meta(dataset_dir, cfg)}
        init = json.loads((work / "init_from.json").read_text()) if (work / "init_from.json").is_file() else None
        if init:
            meta["init_from"] = {k: init[k] for k in ("model", "sha256")}
            (tmp / "init_from.json").write_text(json.dumps(init, indent=2))
        publish_weights(last, tmp / "model.pth", meta)
        cfg.work_dir = "work"  # the dumped config must not point at the scratch work dir
        cfg.resume = False  # nor resume a run: it describes the published weights (model.pth)
        cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]  # evaluate/export must not start W&B runs
        cfg.dump(str(tmp / "config.py"))
        records = [json.loads(line) for log in sorted(work.glob("*/vis_data/scalars.json"))
                   for line in log.read_text().splitlines()]  # every (re)start of the run, in order
        (tmp / "train_log.json").write_text(json.dumps(records))
        for copy in work.glob("init.rank*.pth"):  # the fitted start weights: the checkpoint they came from is named
            copy.unlink()
        shutil.move(str(work), tmp / "work")
        (tmp / "work" / "last_checkpoint").write_text(str(Path(out) / "work" / last.name))
        losses = [r["loss"] for r in records if "loss" in r]
        summary = {"iterations": iters, "final_loss": losses[-1] if losses else None, "first_loss": losses[0] if losses else None}
        if init:
            summary["init_from"] = {"model": init["model"], "loaded": init["loaded"], "remapped": len(init["remapped"]),
                                    "reinitialised": init["reinitialised"]}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
