"""The product's own OpenMMLab modules (admlops.mmext), loaded from a shipped config through custom_imports."""
import json

import numpy as np
import pytest
import torch

from admlops import compat
from conftest import admlops

compat.apply()
CONFIG = "rtmdet_tiny_kitti_lowlight"


@pytest.fixture(autouse=True)
def mmdet_scope():
    """Build from mmdet's registries whatever scope an earlier test (a 3D one: mmdet3d) left as the default."""
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):
        yield


def _cfg():
    from mmengine.config import Config

    from admlops.configs import resolve

    return Config.fromfile(str(resolve("models", CONFIG)))  # custom_imports imports admlops.mmext here


def test_low_light_darkens_and_keeps_the_labels():
    from mmdet.registry import TRANSFORMS

    _cfg()
    np.random.seed(0)
    img = np.full((40, 60, 3), 200, np.uint8)
    boxes = np.array([[1.0, 2.0, 30.0, 20.0]], np.float32)
    out = TRANSFORMS.build(dict(type="LowLight", prob=1.0, gain_range=(0.2, 0.2), gamma_range=(1.0, 1.0),
                                noise_std=0.0))({"img": img.copy(), "gt_bboxes": boxes.copy()})
    assert out["img"].dtype == np.uint8 and out["img"].shape == img.shape
    assert np.all(out["img"] == 40)  # 200 x gain 0.2, gamma 1, no noise
    assert np.array_equal(out["gt_bboxes"], boxes)
    noisy = TRANSFORMS.build(dict(type="LowLight", prob=1.0, noise_std=3.0))({"img": img.copy()})["img"]
    assert noisy.mean() < 200 * 0.5 + 10 and noisy.std() > 0
    untouched = TRANSFORMS.build(dict(type="LowLight", prob=0.0))({"img": img.copy()})["img"]  # the control
    assert np.array_equal(untouched, img)
    with pytest.raises(ValueError, match="prob must be in"):
        TRANSFORMS.build(dict(type="LowLight", prob=2.0))


def test_se_neck_reweights_the_plain_neck_by_its_gates():
    from mmdet.models.necks import CSPNeXtPAFPN
    from mmdet.registry import MODELS

    cfg = _cfg()
    neck_cfg = dict(cfg.model.neck)
    torch.manual_seed(0)
    se_neck = MODELS.build(neck_cfg).eval()
    plain_args = {k: v for k, v in neck_cfg.items() if k not in ("type", "se_reduction")}
    plain = CSPNeXtPAFPN(**plain_args).eval()
    missing = plain.load_state_dict(se_neck.state_dict(), strict=False)
    assert not missing.missing_keys and all(k.startswith("se.") for k in missing.unexpected_keys)
    feats = (torch.randn(1, 96, 24, 80), torch.randn(1, 192, 12, 40), torch.randn(1, 384, 6, 20))
    with torch.no_grad():
        ours, base = se_neck(feats), plain(feats)
        for se, y, x in zip(se_neck.se, ours, base, strict=True):
            gate = se.gate(x)
            assert gate.shape == (1, x.shape[1], 1, 1) and 0 < gate.min() and gate.max() < 1
            assert torch.allclose(y, x * gate, atol=1e-6)
            assert not torch.allclose(y, x)


def test_shipped_config_trains_and_evaluates_through_the_cli(coco_dir, tmp_path):
    model, report = tmp_path / "model", tmp_path / "eval"
    admlops("train", coco_dir, model, "--config", CONFIG, "--max-iters", 2, "--batch-size", 2)
    published = (model / "config.py").read_text()
    assert "admlops.mmext" in published and "SECSPNeXtPAFPN" in published and "LowLight" in published
    state = torch.load(model / "model.pth", weights_only=True)["state_dict"]
    assert any(k.startswith("neck.se.") for k in state)
    admlops("evaluate", coco_dir, model, report)  # the published config loads the modules again
    assert set(json.loads((report / "metrics.json").read_text())["per_class"]) == {"Car", "Pedestrian", "Cyclist"}
