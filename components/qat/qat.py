"""Quantization-aware training: a trained detector fine-tuned with int8 in the loop, for the int8 deploy targets
where post-training quantization loses more than the gate allows: 2D image detectors (every int8 target) and 3D
voxel detectors (onnxruntime:int8; calibrated and run on voxelized scans, the head kept float).

The parent's convolutions become fake-quantized ones (``QuantizedDetector``, admlops/mmext/quantized.py: signed
symmetric int8, activations per tensor, weights per output channel), the range of each convolution's input is
calibrated on train images as the deployed graph sees them (the ``percentile`` of its absolute values, averaged over
the images), and the model is fine-tuned through train (``init_from``: the config's fine-tuning rate) with the
quantization in every forward pass, so the weights learn to work at the precision they will run at. The result is
an int8 model wherever it runs: evaluate measures it quantized, and its export's graph (``end2end.onnx``) carries
QuantizeLinear/DequantizeLinear pairs with those ranges, which its int8 targets take as it is, with no calibration
of their own.

Why the product's own fake-quantized convolution, not NNCF or torch.ao: both insert their quantizers by tracing the
model (NNCF through its patched torch functions on an example input; torch.ao's FX mode through symbolic tracing,
which mmdet's detectors, with their data samples and Python control flow, do not pass; its eager mode needs
hand-placed stubs), and both change the model's class and state dict layout. Swapping the convolutions keeps the
detector what it was (mmdeploy's rewrites, keyed by its class, apply; mmengine's loops, EMA and checkpoints work
unchanged), the config rebuilds it in a fresh process, and the arithmetic is ``torch.fake_quantize_*``, which
PyTorch's ONNX exporter writes as ONNX's own Q/DQ.

The model config's optional ``qat`` dict (defaults below):

    qat = dict(
        keep_float=[],            # modules (and everything under them) whose convolutions stay float; empty: the
                                  # task's (3D voxel detectors: bbox_head, as their post-training int8 keeps it)
        percentile=99.99,         # of |input| per convolution, the activation range (100: the maximum)
        calibration_images=32,    # train images the ranges are calibrated on
        int8_cpu="auto",          # the CPU the int8 model will run on: auto (this machine's) or a kernel class
                                  # (admlops/cpu.py: avx2, avx512, avx512_vnni, avx_vnni, amx); where it has no
                                  # VNNI/AMX the weights are trained 7-bit, the overflow fix post-training int8
                                  # applies there too (admlops/mmext/quantized.py)
    )

The published directory is train's (``model.pth`` with each convolution's ``act_amax``; ``config.py`` with the model
as ``QuantizedDetector``) plus ``qat.json`` (parent, settings, the convolutions quantized, the calibrated ranges).
``init_from.json`` names the parent: register's lineage records it as the parent.
"""
from __future__ import annotations

import json
from pathlib import Path

from admlops import refs
from admlops.cpu import int8_settings
from admlops.errors import UsageError
from admlops.localfs import atomic_dir

DEFAULTS = {"keep_float": [], "percentile": 99.99, "calibration_images": 32, "int8_cpu": "auto"}


def settings(cfg, config_file: str | Path) -> dict:
    """The config's ``qat`` dict over the defaults, checked (a UsageError naming the file and value otherwise)."""
    found = {**DEFAULTS, **dict(cfg.get("qat") or {})}
    unknown = sorted(set(found) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"{config_file}: qat has no setting {', '.join(unknown)}: expected {', '.join(DEFAULTS)}")
    if not 50 < float(found["percentile"]) <= 100:
        raise UsageError(f"{config_file}: qat percentile {found['percentile']}: expected a value in (50, 100]")
    if int(found["calibration_images"]) < 1:
        raise UsageError(f"{config_file}: qat calibration_images {found['calibration_images']}: at least 1")
    try:
        cpu = int8_settings(str(found["int8_cpu"]))
    except UsageError as e:
        raise UsageError(f"{config_file}: qat {e}") from None
    return {"keep_float": list(found["keep_float"]), "percentile": float(found["percentile"]),
            "calibration_images": int(found["calibration_images"]), "int8_cpu": str(found["int8_cpu"]),
            "cpu": cpu, "weight_bits": 7 if cpu["overflow_fix"] else 8}


def quantized_config(cfg, keep_float: list[str], weight_bits: int) -> None:
    """Turn ``cfg`` in place into the quantization-aware model's: ``QuantizedDetector`` around its model."""
    from admlops.mmconfig import import_mmext

    model = dict(cfg.model)
    cfg.model = dict(type="QuantizedDetector", int8=dict(detector=model.pop("type"), keep_float=keep_float,
                                                        weight_bits=weight_bits), **model)
    import_mmext(cfg)


def qat(parent: str | Path, dataset_dir: str | Path, out: str | Path, iters: int | None = None, seed: int = 0,
        store: str = "", batch_size: int | None = None) -> dict:
    """Fine-tune the model ``parent`` (a zoo ``NAME@VERSION`` / ``NAME@ALIAS`` in ``store``, or a train output
    directory) with int8 in the loop ``iters`` iterations (None: the config's; 0: calibrated, not fine-tuned) on
    ``dataset_dir`` and publish the model directory at ``out`` (module doc); returns qat.json."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    from admlops import compat
    from admlops.components.export.export import load_config
    from admlops.components.train.train import finetune_into
    from admlops.localfs import file_sha256
    from admlops.mmconfig import use_dataset
    from admlops.mmext.quantized import calibrate, is_quantized, quantize
    from admlops.tasks import task_of

    compat.apply()
    out = Path(out)
    with refs.local_model(store, parent, prefix="admlops-qat-") as (parent_dir, name), atomic_dir(out) as tmp:
        cfg = Config.fromfile(str(parent_dir / "config.py"))
        found = settings(cfg, parent_dir / "config.py")
        if is_quantized(cfg):
            raise UsageError(f"{name} is quantization-aware trained already: fine-tune it with train --init-from")
        task = task_of(cfg)
        forward = task.qat_forward()  # a UsageError for a kind of model QAT does not take
        found["keep_float"] = found["keep_float"] or list(task.qat_keep_float)
        init_default_scope(cfg.get("default_scope", "mmdet"))
        model = MODELS.build(cfg.model)
        checkpoint = load_checkpoint(model, str(parent_dir / "model.pth"), map_location="cpu", logger="silent")
        try:
            quantized = quantize(model, found["keep_float"], found["weight_bits"])
        except ValueError as e:
            raise UsageError(f"{parent_dir / 'config.py'}: {e}") from None
        deploy_cfg = load_config("deploy", task.deploy_config)
        use_dataset(cfg, dataset_dir)
        task.prepare(deploy_cfg, cfg, dataset_dir)
        batches = task.calibration_set(dataset_dir, cfg, deploy_cfg, found["calibration_images"])
        ranges = calibrate(model, forward, batches.batches, found["percentile"])
        quantized_config(cfg, found["keep_float"], found["weight_bits"])
        record = {"parent": name, "parent_sha256": file_sha256(parent_dir / "model.pth"), **found,
                  "quantized": len(quantized), "calibration": {"source": batches.source, "images": len(batches.images)},
                  "act_amax": {k: round(v, 6) for k, v in ranges.items()}}
        init = {"source": str(parent), "model": name, "sha256": record["parent_sha256"], "qat": True}
        record["finetune"] = finetune_into(tmp, out, dataset_dir, cfg, model, checkpoint.get("meta", {}),
                                           iters, seed, batch_size, init)
        (tmp / "qat.json").write_text(json.dumps(record, indent=2))
    return record
