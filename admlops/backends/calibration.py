"""Images as the deployed graph sees them: the model's test pipeline and data preprocessor through mmdeploy's task
processor (decode, resize, pad, normalise), the preprocessing the PyTorch evaluation applies too. Int8 backends
calibrate on such batches of train images; the benchmark times backends on such batches of val images.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from admlops import compat
from admlops.backends.base import Calibration
from admlops.errors import InputError, UsageError


CALIBRATION_IMAGES = 32  # train images (evenly spaced over the split) int8 calibrates on unless told otherwise


def preprocessor(model_cfg, deploy_cfg) -> Callable[[str | Path], np.ndarray]:
    """A function: image file -> float32 [1, 3, H, W], the graph's input for that image."""
    compat.apply()
    from mmdeploy.apis.utils import build_task_processor
    from mmengine.registry import MODELS

    task = build_task_processor(model_cfg, deploy_cfg, "cpu")
    data_preprocessor = MODELS.build(model_cfg.model.data_preprocessor)

    def run(image: str | Path) -> np.ndarray:
        return task.create_input(str(image), data_preprocessor=data_preprocessor)[1].numpy().astype(np.float32)

    return run


def split_images(dataset_dir: str | Path, split: str) -> tuple[Path, list[str]]:
    """The annotation file of ``split`` in a converted dataset and its image files, in file order."""
    ann = Path(dataset_dir) / "annotations" / f"{split}.json"
    try:
        images = json.loads(ann.read_text())["images"]
    except FileNotFoundError:
        raise InputError(ann, f"missing: the dataset has no {split} split") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(ann, f"not a COCO annotation file: {e}") from None
    return ann, [str(Path(dataset_dir) / im["file_name"]) for im in images]


def spread(items: list, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (all of them when there are fewer), in order."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def check_count(count: int) -> None:
    if count < 1:
        raise UsageError(f"calibration images: {count}: int8 needs at least one input to calibrate on")


def calibration_set(dataset_dir: str | Path, model_cfg, deploy_cfg, count: int, split: str = "train") -> Calibration:
    """``count`` train images evenly spaced over the split, preprocessed, one per batch."""
    check_count(count)
    ann, images = split_images(dataset_dir, split)
    if not images:
        raise InputError(ann, f"the {split} split has no images: int8 needs images to calibrate on")
    chosen = spread(images, count)
    run = preprocessor(model_cfg, deploy_cfg)
    batches = [run(image) for image in tqdm(chosen, desc=f"calibration images ({split})", unit="img")]
    return Calibration(str(ann), batches, chosen)
