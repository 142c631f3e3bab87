"""Knowledge distillation: a student config trained from scratch on a dataset while a trained zoo model (the
teacher, usually a larger one of the same classes) guides it through its neck features and class logits
(``DistillingDetector``, admlops/mmext/distill.py), published as an ordinary model of the student's config.

The student config's ``distillation`` dict sets the imitation losses (defaults below):

    distillation = dict(feature_weight=1.0, logit_weight=1.0, temperature=1.0)

Training is train's (components/train: one process or DDP under torchrun, resumable); the published directory is
train's layout with the student alone (``config.py``: the student's model, ``model.pth``: its weights, the
teacher and the adapters dropped), so evaluate, export, benchmark and register take it like any model, plus
``distill.json`` (the teacher and its checkpoint's SHA-256, the weights, the imitation losses first and last).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from admlops import refs
from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir

DEFAULTS = {"feature_weight": 1.0, "logit_weight": 1.0, "temperature": 1.0}


def settings(cfg, config_file: str | Path) -> dict:
    """The config's ``distillation`` dict over the defaults, checked (a UsageError naming the file otherwise)."""
    found = dict(cfg.get("distillation") or {})
    unknown = sorted(set(found) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"{config_file}: distillation has no setting {', '.join(unknown)}: expected {', '.join(DEFAULTS)}")
    out = {k: float(found.get(k, v)) for k, v in DEFAULTS.items()}
    if out["feature_weight"] < 0 or out["logit_weight"] < 0 or out["feature_weight"] + out["logit_weight"] == 0:
        raise UsageError(f"{config_file}: distillation weights {out['feature_weight']}, {out['logit_weight']}: "
                         "non-negative, at least one above 0")
    if out["temperature"] <= 0:
        raise UsageError(f"{config_file}: distillation temperature {out['temperature']}: above 0")
    return out


def model_classes(model_dir: Path) -> tuple[str, ...]:
    """The classes a trained model predicts, from its checkpoint's metadata."""
    import torch

    meta = torch.load(model_dir / "model.pth", map_location="cpu", weights_only=True).get("meta", {})
    classes = meta.get("dataset_meta", {}).get("classes")
    if not classes:
        raise InputError(model_dir / "model.pth", "has no dataset_meta classes: not a model this product trained")
    return tuple(classes)


def distill(teacher: str | Path, dataset_dir: str | Path, out: str | Path, student_config: str = "rtmdet_tiny_kitti",
            max_iters: int | None = None, seed: int = 0, store: str = "", batch_size: int | None = None) -> dict:
    """Train ``student_config`` on ``dataset_dir`` for ``max_iters`` (None: the config's) guided by ``teacher`` (a
    zoo ``NAME@VERSION`` / ``NAME@ALIAS`` in ``store``, or a train output directory) and publish the student at
    ``out`` (module doc); returns distill.json."""
    from mmengine.config import Config

    from admlops.components.train.train import train_into
    from admlops.configs import resolve
    from admlops.localfs import file_sha256
    from admlops.mmconfig import dataset_meta, import_mmext

    config_file = resolve("models", student_config)
    cfg = Config.fromfile(str(config_file))
    weights = settings(cfg, config_file)
    out = Path(out)
    with refs.local_model(store, teacher, prefix="admlops-teacher-") as (teacher_dir, name), atomic_dir(out) as tmp:
        theirs, ours = model_classes(teacher_dir), tuple(dataset_meta(dataset_dir, cfg)["classes"])
        if theirs != ours:
            raise UsageError(f"teacher {name} predicts {', '.join(theirs)}; the dataset's classes are "
                             f"{', '.join(ours)}: distillation needs the same classes in the same order")
        student = cfg.model
        cfg.model = dict(type="DistillingDetector", student=student, **weights,
                         teacher=dict(config=str(teacher_dir / "config.py"), checkpoint=str(teacher_dir / "model.pth")))
        import_mmext(cfg)
        start = tmp / "start"
        start.mkdir()
        cfg.dump(str(start / "config.py"))
        summary = train_into(tmp, out, dataset_dir, config=str(start / "config.py"), max_iters=max_iters, seed=seed,
                             batch_size=batch_size)
        shutil.rmtree(start)
        _student_only(tmp, student, str(student_config))
        log = json.loads((tmp / "train_log.json").read_text())
        losses = {k: [r[k] for r in log if k in r] for k in ("loss_distill_neck", "loss_distill_logits", "loss")}
        record = {"teacher": name, "teacher_sha256": file_sha256(teacher_dir / "model.pth"),
                  "student_config": str(student_config), **weights, "iterations": summary["iterations"], "seed": seed,
                  "losses": {k: {"first": v[0], "last": v[-1]} for k, v in losses.items() if v}}
        (tmp / "distill.json").write_text(json.dumps(record, indent=2))
    return record


def _student_only(model_dir: Path, student: dict, config_name: str) -> None:
    """Rewrite train's published ``config.py`` and ``model.pth`` to the student's own (no teacher, no adapters; the
    config keeps importing admlops.mmext, which every process of the product can)."""
    import torch
    from mmengine.config import Config

    from admlops.mmext.distill import student_state

    cfg = Config.fromfile(str(model_dir / "config.py"))
    cfg.model = student
    cfg.dump(str(model_dir / "config.py"))
    checkpoint = torch.load(model_dir / "model.pth", map_location="cpu", weights_only=True)
    torch.save({"state_dict": student_state(checkpoint["state_dict"]), "meta": {**checkpoint["meta"], "config": config_name}},
               model_dir / "model.pth")
