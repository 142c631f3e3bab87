"""Start training from a model: the weights of a zoo model (``NAME@VERSION``, ``NAME@ALIAS``), a train output
directory or a checkpoint file, fitted to the model the config builds.

Every parameter of the new model is matched by name to the checkpoint's:

* **class layers** are found by building the config's model a second time with one class more: the parameters whose
  first dimension grows are ``k x classes + extra`` rows (k rows per class, class by class, then ``extra`` rows of no
  class: a softmax head's background row), e.g. RTMDet's and YOLOX's class convolutions (k=1), Faster R-CNN's
  ``fc_cls`` (k=1, extra=1) and its per-class ``fc_reg`` (k=4). Their rows are **remapped** by class name (the
  checkpoint's ``meta.dataset_meta.classes``): a class the checkpoint has gets its rows wherever it now sits, a new
  class keeps the model's own initialisation (**re-initialised**, listed per layer), the extra rows are copied. Rows
  are class by class only where at most one row belongs to no class; a layer with more (YOLOv3's per-anchor
  predictions: 3 x (5 + classes) rows, the classes interleaved with each anchor's box and objectness) is
  re-initialised whole when the classes differ. A checkpoint that names no classes is loaded as it is when the
  shapes agree (the same classes assumed, said so);
* every other parameter is **loaded** when its shape is the same;
* anything else (a parameter the checkpoint lacks or has in excess, another shape) means another architecture:
  refused (InputError naming the first mismatched layer and both shapes) before training starts.

The fitted weights are written as an mmengine checkpoint the Runner loads (``load_from``); what was loaded,
remapped and re-initialised is returned as the report train publishes (``init_from.json``) and logs.
"""
from __future__ import annotations

from pathlib import Path

from admlops import refs
from admlops.errors import InputError
from admlops.localfs import file_sha256
from admlops.mmconfig import set_num_classes

FORMS = "a zoo model NAME@VERSION or NAME@ALIAS, a train output directory (model.pth) or a checkpoint file"


def load_checkpoint(source: str | Path, store: str = "") -> tuple[dict, str, str, Path]:
    """The checkpoint ``source`` names: its dict (``state_dict``, ``meta``), what it is (``NAME@VERSION`` for a zoo
    model: the parent in the lineage; else the file), the file's sha256 and the path it was read from."""
    import torch

    from admlops import compat

    compat.apply()  # the safe loader, with mmengine's checkpoint types allowed
    if refs.is_reference(source):
        with refs.local_copy(store, "models", source, prefix="admlops-init-") as (path, version):
            return (_load(torch, path / "model.pth"), f"{version.name}@{version.version}",
                    file_sha256(path / "model.pth"), Path(str(source)))
    path = Path(source)
    path = path / "model.pth" if path.is_dir() else path
    if not path.is_file():
        raise InputError(path, f"missing: --init-from takes {FORMS}")
    return _load(torch, path), str(path), file_sha256(path), path


def _load(torch, path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a checkpoint, or one that pickles code the safe loader refuses
        raise InputError(path, f"not a checkpoint the safe loader reads: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict):
        raise InputError(path, f"not a checkpoint: a {type(ckpt).__name__}, expected a dict with a state_dict")
    return ckpt


def class_layers(model_cfg, n: int, model_state: dict) -> dict[str, tuple[int, int]]:
    """The class layers of a model of ``n`` classes (``model_state``): name -> (k, extra) rows (module doc)."""
    import copy

    from mmengine.registry import MODELS

    probe = copy.deepcopy(model_cfg)
    set_num_classes(probe, n + 1)
    grown = MODELS.build(probe).state_dict()
    layers = {}
    for key, tensor in model_state.items():
        if key in grown and grown[key].shape != tensor.shape:
            k = grown[key].shape[0] - tensor.shape[0]
            layers[key] = (k, tensor.shape[0] - k * n)
    return layers


def fit(model_state: dict, ckpt_state: dict, old_classes: list[str] | None, new_classes: list[str],
        layers: dict[str, tuple[int, int]], checkpoint: str) -> tuple[dict, dict]:
    """``model_state`` (the new model's freshly initialised tensors) with the checkpoint's weights put in;
    ``layers``: its class layers (``class_layers``). Returns the fitted state and the report; InputError (naming
    ``checkpoint``) for another architecture."""
    ckpt_state = {k.removeprefix("module."): v for k, v in ckpt_state.items()}
    fitted, remapped = {}, {}
    mismatches = [k for k in ckpt_state if k not in model_state] + [k for k in model_state if k not in ckpt_state]
    for key, fresh in model_state.items():
        old = ckpt_state.get(key)
        if old is None:
            continue
        if key in layers and old_classes is not None and old_classes != new_classes:
            k, extra = layers[key]
            if tuple(old.shape) != (k * len(old_classes) + extra, *fresh.shape[1:]):
                mismatches.append(key)
                continue
            out = fresh.clone()
            kept = [c for c in new_classes if c in old_classes] if extra <= 1 else []
            for c in kept:
                i, j = new_classes.index(c), old_classes.index(c)
                out[k * i:k * (i + 1)] = old[k * j:k * (j + 1)]
            if kept:
                out[k * len(new_classes):] = old[k * len(old_classes):]
            fitted[key] = out
            remapped[key] = {"rows_per_class": k, "extra_rows": extra, "kept": kept,
                             "new": [c for c in new_classes if c not in kept]}
        elif old.shape == fresh.shape:
            fitted[key] = old
        else:
            mismatches.append(key)
    if mismatches:
        order = list(model_state)
        first = min(mismatches, key=lambda k: order.index(k) if k in order else len(order))
        shape = lambda state: tuple(state[first].shape) if first in state else "none"  # noqa: E731
        why = "" if old_classes else " (the checkpoint names no classes, meta.dataset_meta.classes, to remap a head by)"
        raise InputError(checkpoint, f"another architecture than the config's: first mismatched layer {first} "
                         f"(checkpoint {shape(ckpt_state)}, model {shape(model_state)}); {len(set(mismatches))} layers "
                         f"differ{why}")
    report = {"loaded": len(fitted) - len(remapped), "remapped": remapped,
              "reinitialised": {k: v["new"] for k, v in remapped.items() if v["new"]},
              "classes": {"checkpoint": old_classes, "model": new_classes,
                          "matched": "by name" if old_classes else "not named by the checkpoint: loaded as they are"}}
    return {**model_state, **fitted}, report


def initial_weights(cfg, source: str | Path, classes: list[str], dest: Path, store: str = "") -> dict:
    """Build the model of ``cfg`` (its own initialisation), fit the checkpoint ``source`` names into it, and write
    the result to ``dest`` (an mmengine checkpoint: ``load_from`` it); returns the report, with ``source`` (as
    given), ``model`` (``NAME@VERSION`` of a zoo model, else the file) and ``sha256`` of the checkpoint read."""
    import torch
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, init_default_scope

    ckpt, what, sha256, path = load_checkpoint(source, store)
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "not a checkpoint: expected a state_dict of tensors")
    init_default_scope(cfg.get("default_scope", "mmdet"))
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()
    level, _ = logger.level, logger.setLevel("WARNING")  # init_weights logs every parameter's initialiser
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    fresh = model.state_dict()
    old_classes = ((ckpt.get("meta") or {}).get("dataset_meta") or {}).get("classes")
    fitted, report = fit(fresh, state, list(old_classes) if old_classes else None, list(classes),
                         class_layers(cfg.model, len(classes), fresh), str(path))
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": fitted, "meta": {"init_from": what}}, dest)
    return {"source": str(source), "model": what, "sha256": sha256, **report}


def mined_by(version: dict | None, store: str = "") -> str:
    """The model that mined the dataset version ``version`` (a version record, e.g. convert's ``source``) names:
    iterate's merge records it in the version's lineage. ``NAME@VERSION`` for a zoo model, its directory for a local
    one, "" when the version was not mined (or is not in ``store``)."""
    from admlops import catalog
    from admlops.objectstore import open_store

    if not version or "name" not in version:
        return ""
    st = open_store(store or None)
    if not catalog.committed(st, "datasets", version["name"], version["version"]):
        return ""
    model = (catalog.show(st, "datasets", version["name"], version["version"]).info.get("lineage") or {}).get("model")
    if not model:
        return ""
    return f"{model['name']}@{model['version']}" if "name" in model else model.get("path", "")


def describe(report: dict) -> str:
    """One line for the train log."""
    remapped = "; ".join(f"{k} (kept {', '.join(v['kept']) or 'none'}; new {', '.join(v['new']) or 'none'})"
                         for k, v in report["remapped"].items())
    return (f"init from {report['model']}: {report['loaded']} tensors loaded, {len(report['remapped'])} remapped"
            f"{': ' + remapped if remapped else ''}; re-initialised: the new classes' rows of "
            f"{len(report['reinitialised'])} layers"
            + (f"; fine-tuning at learning rate {report['lr']:g}" if "lr" in report else ""))
