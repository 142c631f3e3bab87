"""Structural pruning with Torch-Pruning: a trained detector's channels removed until its MACs fall by a target
fraction, then fine-tuned, published as a model directory whose config carries the pruned architecture.

Torch-Pruning traces the network on one input of the dataset (the task's ``prunable``), groups every channel with the
layers that must lose it too (a convolution's output with the next one's input, the norms between them, the
branches a concatenation or addition joins), scores each group with the config's importance criterion and removes
the lowest-scoring channels, the same fraction in every layer, a step at a time, until the MACs are at or below
``(1 - flops_reduction)`` of the parent's. The layers the config keeps whole (its heads' last layers: their outputs
are the classes and boxes) lose no output channel. The model config's ``pruning`` dict:

    pruning = dict(
        importance='taylor',  # first-order Taylor: |weight x gradient of the training loss| over the group (default);
                          # 'l2' / 'l1': the group's weight norm; 'random': a control
    batches=4,            # train batches whose loss gradients Taylor importance reads, before every step
        keep=['bbox_head.rtm_cls', 'bbox_head.rtm_reg'],  # modules (and everything under them) kept whole
        round_to=8,        # channel counts stay multiples of this (what vector units and TensorRT's kernels like)
    )

The published directory is train's (the fine-tuned ``model.pth``, ``config.py``: the parent's config with the model
as ``PrunedDetector``, admlops/mmext/pruned.py, so a fresh process builds the pruned shapes from the config alone)
plus ``prune.json`` (parent, criterion, MACs and parameters before and after, per step). ``init_from.json`` names the
parent (``NAME@VERSION`` for a zoo model): register's lineage records it as the parent.
"""
from __future__ import annotations

import json
from pathlib import Path

from admlops import refs
from admlops.errors import UsageError
from admlops.localfs import atomic_dir

IMPORTANCE = {"taylor": ("GroupTaylorImportance", {}), "l2": ("GroupMagnitudeImportance", {"p": 2}),
              "l1": ("GroupMagnitudeImportance", {"p": 1}), "random": ("RandomImportance", {})}
MAX_STEPS = 20  # the channel fraction grows by MAX_RATIO / MAX_STEPS a step
MAX_RATIO = 0.9


def settings(cfg, config_file: str | Path) -> dict:
    """The config's ``pruning`` dict, checked (a UsageError naming the file otherwise)."""
    found = cfg.get("pruning")
    if not found:
        raise UsageError(f"{config_file} has no pruning settings: add pruning = dict(importance='taylor', keep=[<the "
                         "heads' last layers>], round_to=8) (components/prune/prune.py)")
    importance = found.get("importance", "taylor")
    if importance not in IMPORTANCE:
        raise UsageError(f"{config_file}: pruning importance {importance!r}: expected one of {', '.join(IMPORTANCE)}")
    batches = int(found.get("batches", 4))
    if importance == "taylor" and batches < 1:
        raise UsageError(f"{config_file}: pruning batches {batches}: Taylor importance needs at least one batch")
    return {"importance": importance, "keep": list(found.get("keep", [])), "round_to": int(found.get("round_to", 8)),
            "batches": batches}


def loss_gradients(model, cfg, dataset_dir: str | Path, batches: int) -> None:
    """Accumulate into ``model``'s parameters the gradients of its training loss over the first ``batches`` train
    batches (what Taylor importance multiplies the weights by); norms in eval mode, the statistics deployed."""
    import copy

    from mmengine.runner import Runner

    from admlops.mmconfig import use_dataset

    cfg = copy.deepcopy(cfg)
    use_dataset(cfg, dataset_dir)
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.sampler.seed = 0  # the same batches on every run: the same channels go
    model.zero_grad()
    model.eval()
    for _, batch in zip(range(batches), Runner.build_dataloader(cfg.train_dataloader, seed=0)):
        loss, _ = model.parse_losses(model(**model.data_preprocessor(batch, True), mode="loss"))
        loss.backward()


def base_model_cfg(model_cfg) -> dict:
    """The unpruned detector's model dict (a ``PrunedDetector``'s without its channels)."""
    model = dict(model_cfg)
    if model.get("type") == "PrunedDetector":
        model = {k: v for k, v in model.items() if k not in ("type", "detector", "channels")}
        model["type"] = model_cfg["detector"]
    return model


def traced(model, cfg, dataset_dir: str | Path):
    """``(net, example)``: ``model``'s tensor forward on the task's example input (``prunable``) as a module whose
    outputs are a flat list of tensors, what Torch-Pruning traces and counts."""
    import torch

    from admlops.tasks import task_of

    forward, example = task_of(cfg).prunable(model, cfg, dataset_dir)

    class Traced(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            def flat(o):
                return [o] if isinstance(o, torch.Tensor) else [t for i in o for t in flat(i)]
            return flat(forward(self.model, x))

    return Traced().eval(), example


def model_size(model_dir: str | Path, dataset_dir: str | Path) -> dict:
    """``{"macs", "params"}`` of the model a model directory's config.py builds, counted by Torch-Pruning on the task's
    example input of ``dataset_dir`` (the count pruning reports; a quantization-aware trained model's convolutions
    counted as the convolutions they are)."""
    import torch
    import torch_pruning as tp
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from admlops.mmext.quantized import dequantize

    cfg = Config.fromfile(str(Path(model_dir) / "config.py"))
    init_default_scope(cfg.get("default_scope", "mmdet"))
    net, example = traced(dequantize(MODELS.build(cfg.model)).eval(), cfg, dataset_dir)  # a QAT model's convolutions
    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(net, example)
    return {"macs": int(macs), "params": int(params)}


def prune_model(model, cfg, dataset_dir: str | Path, flops_reduction: float, config_file: str | Path) -> dict:
    """Prune ``model`` (built from ``cfg``, weights loaded) in place to ``flops_reduction`` fewer MACs; returns the
    record: the ``channels`` for the config and the MACs and parameters per step."""
    import torch
    import torch_pruning as tp

    found = settings(cfg, config_file)
    net, example = traced(model, cfg, dataset_dir)
    names = dict(model.named_modules())
    missing = [k for k in found["keep"] if k not in names]
    if missing:
        raise UsageError(f"{config_file}: pruning keep names {', '.join(missing)}, which the model does not have")
    kept = [m for name, m in names.items() if any(name == k or name.startswith(k + ".") for k in found["keep"])
            and isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))]
    kind, kwargs = IMPORTANCE[found["importance"]]
    with torch.no_grad():
        macs0, params0 = tp.utils.count_ops_and_params(net, example)
    pruner = tp.pruner.MetaPruner(net, example, importance=getattr(tp.importance, kind)(**kwargs),
                                  pruning_ratio=MAX_RATIO, iterative_steps=MAX_STEPS, ignored_layers=kept,
                                  round_to=found["round_to"], output_transform=lambda outs: sum(o.sum() for o in outs))
    steps = []
    for _ in range(MAX_STEPS):
        if found["importance"] == "taylor":  # the gradients of the model as it is now
            loss_gradients(model, cfg, dataset_dir, found["batches"])
        pruner.step()
        with torch.no_grad():
            macs, params = tp.utils.count_ops_and_params(net, example)
        steps.append({"macs": macs, "params": params})
        if macs <= (1 - flops_reduction) * macs0:
            break
    else:
        raise UsageError(f"pruning reached {1 - macs / macs0:.0%} fewer MACs at most, not {flops_reduction:.0%}")
    model.zero_grad()
    return {**found, "flops_reduction": flops_reduction, "macs": [macs0, macs], "params": [params0, params],
            "steps": steps, "example_input": list(example.shape)}


def pruned_config(cfg, model, record: dict) -> None:
    """Turn ``cfg`` in place into the pruned model's: ``PrunedDetector`` with the channels ``model`` now has."""
    from mmengine.registry import MODELS, init_default_scope

    from admlops.mmconfig import import_mmext
    from admlops.mmext.pruned import build_pruned, structure

    base = base_model_cfg(cfg.model)
    init_default_scope(cfg.get("default_scope", "mmdet"))
    channels = structure(model, MODELS.build(base))
    rebuilt = build_pruned(base["type"], channels, **{k: v for k, v in base.items() if k != "type"}).state_dict()
    wrong = [k for k, v in model.state_dict().items() if k not in rebuilt or rebuilt[k].shape != v.shape]
    if wrong:  # a module kind whose sizes structure() does not record: a defect, not bad input
        raise RuntimeError(f"the recorded pruned structure does not rebuild {wrong[0]} ({len(wrong)} tensors differ)")
    cfg.model = dict(type="PrunedDetector", detector=base["type"], channels=channels,
                     **{k: v for k, v in base.items() if k != "type"})
    import_mmext(cfg)
    record["channels_changed"] = len(channels)


def prune(parent: str | Path, dataset_dir: str | Path, out: str | Path, flops_reduction: float = 0.4,
          finetune_iters: int | None = None, seed: int = 0, store: str = "", batch_size: int | None = None) -> dict:
    """Prune the model ``parent`` (a zoo ``NAME@VERSION`` / ``NAME@ALIAS`` in ``store``, or a train output
    directory) to ``flops_reduction`` fewer MACs, fine-tune it ``finetune_iters`` iterations (None: the config's;
    0: not fine-tuned) on ``dataset_dir`` and publish the model directory at ``out`` (module doc); returns
    prune.json."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    from admlops import compat
    from admlops.components.train.train import finetune_into
    from admlops.localfs import file_sha256

    if not 0 < flops_reduction < 1:
        raise UsageError(f"--flops-reduction {flops_reduction}: the fraction of MACs to remove is in (0, 1)")
    compat.apply()
    out = Path(out)
    with refs.local_model(store, parent, prefix="admlops-prune-") as (parent_dir, name), atomic_dir(out) as tmp:
        cfg = Config.fromfile(str(parent_dir / "config.py"))
        settings(cfg, parent_dir / "config.py")  # bad settings fail before the model is built
        init_default_scope(cfg.get("default_scope", "mmdet"))
        model = MODELS.build(cfg.model)
        checkpoint = load_checkpoint(model, str(parent_dir / "model.pth"), map_location="cpu", logger="silent")
        model.eval()
        record = prune_model(model, cfg, dataset_dir, flops_reduction, parent_dir / "config.py")
        pruned_config(cfg, model, record)
        record = {"parent": name, "parent_sha256": file_sha256(parent_dir / "model.pth"), **record}
        init = {"source": str(parent), "model": name, "sha256": record["parent_sha256"], "pruned": True}
        record["finetune"] = finetune_into(tmp, out, dataset_dir, cfg, model, checkpoint.get("meta", {}),
                                           finetune_iters, seed, batch_size, init)
        (tmp / "prune.json").write_text(json.dumps(record, indent=2))
    return record
