"""Starting from a model (``admlops train --init-from``, components/train/init_from.py): same-shaped layers loaded,
a class head remapped by class name, another architecture refused naming its first mismatched layer; fine-tuning
from a zoo model reaches the from-scratch model's mAP in a sixth of its iterations, and the zoo records the parent."""
from __future__ import annotations

import json

import pytest
import torch

from admlops.components.train.init_from import fit
from admlops.errors import InputError
from conftest import LEARNED, LEARNED_MAP50_FLOOR, admlops

OLD, NEW = ["Car", "Pedestrian", "Cyclist"], ["Cyclist", "Car", "Truck"]
# toy class layers: one row per class (k=1), one per class plus a background row (k=1, extra=1), four per class (k=4)
LAYERS = {"cls.w": (1, 0), "fc_cls.w": (1, 1), "reg.w": (4, 0)}


def _rows(n: int) -> torch.Tensor:
    return torch.arange(float(n))[:, None].repeat(1, 2)  # row i holds i


def _toy(classes: int, fill: float) -> dict:
    return {"backbone.w": torch.full((4, 2), fill), "cls.w": torch.full((classes, 2), fill),
            "fc_cls.w": torch.full((classes + 1, 2), fill), "reg.w": torch.full((4 * classes, 2), fill)}


def test_class_rows_are_remapped_by_name_and_new_classes_keep_their_initialisation():
    ckpt = {"backbone.w": torch.randn(4, 2), "cls.w": _rows(3), "fc_cls.w": _rows(4), "reg.w": _rows(12)}
    state, report = fit(_toy(3, -1.0), ckpt, OLD, NEW, LAYERS, "ckpt.pth")
    assert torch.equal(state["backbone.w"], ckpt["backbone.w"])
    assert state["cls.w"][:, 0].tolist() == [2.0, 0.0, -1.0]  # Cyclist from old row 2, Car from 0, Truck fresh
    assert state["fc_cls.w"][:, 0].tolist() == [2.0, 0.0, -1.0, 3.0]  # the background row copied
    assert state["reg.w"][:, 0].tolist() == [8, 9, 10, 11, 0, 1, 2, 3, -1, -1, -1, -1]
    assert report["loaded"] == 1 and set(report["remapped"]) == set(LAYERS)
    assert report["remapped"]["cls.w"]["kept"] == ["Cyclist", "Car"]
    assert report["reinitialised"] == {k: ["Truck"] for k in LAYERS}
    # fewer classes than the checkpoint: the kept classes' rows only
    state, _ = fit(_toy(1, -1.0), ckpt, OLD, ["Pedestrian"], LAYERS, "ckpt.pth")
    assert state["reg.w"][:, 0].tolist() == [4, 5, 6, 7] and state["fc_cls.w"][:, 0].tolist() == [1.0, 3.0]
    # the same classes in another order are permuted too (same shapes: a plain load would mislabel them)
    state, report = fit(_toy(3, -1.0), ckpt, OLD, ["Cyclist", "Pedestrian", "Car"], LAYERS, "ckpt.pth")
    assert state["cls.w"][:, 0].tolist() == [2.0, 1.0, 0.0] and report["reinitialised"] == {}


def test_a_layer_whose_classes_interleave_is_reinitialised_whole():
    """YOLOv3's predictions: per anchor 5 box/objectness rows then the classes (k=3 rows per class, 15 of no class):
    not class by class, so with other classes the layer keeps its fresh initialisation, every class listed."""
    ckpt = {"pred.w": _rows(3 * (5 + 3))}
    state, report = fit({"pred.w": torch.full((3 * (5 + 3), 2), -1.0)}, ckpt, OLD, NEW, {"pred.w": (3, 15)}, "y.pth")
    assert (state["pred.w"] == -1).all() and report["reinitialised"] == {"pred.w": NEW}
    state, report = fit({"pred.w": torch.full((24, 2), -1.0)}, ckpt, OLD, OLD, {"pred.w": (3, 15)}, "y.pth")
    assert torch.equal(state["pred.w"], ckpt["pred.w"]) and report["loaded"] == 1  # the same classes: loaded


def test_another_architecture_is_refused_naming_the_first_mismatched_layer():
    ckpt = {"backbone.w": torch.zeros(8, 2), "cls.w": _rows(3), "fc_cls.w": _rows(4), "reg.w": _rows(12)}
    with pytest.raises(InputError, match=r"first mismatched layer backbone.w \(checkpoint \(8, 2\), model \(4, 2\)\)"):
        fit(_toy(3, -1.0), ckpt, OLD, OLD, LAYERS, "other.pth")
    missing = {k: v for k, v in _toy(3, 0.0).items() if k != "fc_cls.w"}
    with pytest.raises(InputError, match=r"first mismatched layer fc_cls.w \(checkpoint none, model \(4, 2\)\)"):
        fit(_toy(3, -1.0), missing, OLD, OLD, LAYERS, "other.pth")
    with pytest.raises(InputError, match="names no classes"):  # a head of 4 classes, and no names to remap it by
        fit(_toy(3, -1.0), _toy(4, 0.0), None, OLD, LAYERS, "other.pth")
    state, report = fit(_toy(3, -1.0), _toy(3, 0.0), None, OLD, LAYERS, "ok.pth")  # the control: same shapes
    assert report["loaded"] == 4 and all((v == 0).all() for v in state.values())
    assert report["classes"]["matched"].startswith("not named")


def test_a_trained_models_head_is_remapped_and_another_width_refused(learned_model, tmp_path):
    """On the learned RTMDet: its class convolutions are the class layers found; rows follow their class names;
    the same config at another width is refused at its first layer."""
    from mmengine.config import Config

    from admlops.components.train.init_from import initial_weights

    cfg = Config.fromfile(str(learned_model.model / "config.py"))
    classes = ["Cyclist", "Car", "Van"]
    report = initial_weights(cfg, learned_model.model, classes, tmp_path / "init.pth")
    old = torch.load(learned_model.model / "model.pth", weights_only=True)["state_dict"]
    fitted = torch.load(tmp_path / "init.pth", weights_only=True)["state_dict"]
    assert report["classes"]["checkpoint"] == ["Car", "Pedestrian", "Cyclist"]
    assert sorted(report["remapped"]) == sorted(f"bbox_head.rtm_cls.{i}.{p}" for i in range(3) for p in ("weight", "bias"))
    assert report["reinitialised"] == {k: ["Van"] for k in report["remapped"]}
    assert report["loaded"] == len(fitted) - 6 and report["model"] == str(learned_model.model / "model.pth")
    w = "bbox_head.rtm_cls.0.weight"
    assert torch.equal(fitted[w][0], old[w][2]) and torch.equal(fitted[w][1], old[w][0])
    assert not torch.equal(fitted[w][2], old[w][1])  # Van: fresh, not Pedestrian's row
    assert torch.equal(fitted["backbone.stem.0.conv.weight"], old["backbone.stem.0.conv.weight"])
    cfg.model.backbone.widen_factor = 0.5
    cfg.model.neck.in_channels = [128, 256, 512]
    with pytest.raises(InputError, match="first mismatched layer backbone.stem.0.conv.weight"):
        initial_weights(cfg, learned_model.model, classes, tmp_path / "other.pth")


def test_fine_tuning_from_the_zoo_reaches_the_learned_map_in_a_sixth_of_the_iterations(learned_model, tmp_path):
    """New data of the same classes (another generator seed): from the zoo's learned model, a sixth of the learned
    model's iterations reaches the mAP@0.5 floor the learned model was held to; from scratch the same iterations do
    not (the control). The model records what it started from and register makes it the lineage's parent."""
    from admlops import catalog, zoo
    from admlops.components.register.register import register
    from admlops.objectstore import open_store

    store = str(tmp_path / "store")
    parent = zoo.publish(open_store(store), "det", learned_model.model, zoo.lineage(None, None))
    zoo.promote(open_store(store), "det", parent.version, "production")
    kitti, data = tmp_path / "kitti", tmp_path / "data"
    admlops("data", "synth", "kitti", "--frames", LEARNED["frames"], "--seed", LEARNED["seed"] + 100, "--out", kitti)
    admlops("data", "convert", "--strict", kitti, data)
    iters = LEARNED["iters"] // 6  # measured: 0.61 tuned against 0.01 from scratch (at a third: 0.84 / 0.07)
    maps = {}
    for name, extra in (("tuned", ["--init-from", "det@production", "--store", store]), ("scratch", [])):
        admlops("train", data, tmp_path / name, "--max-iters", iters, "--batch-size", LEARNED["batch_size"], *extra)
        admlops("evaluate", data, tmp_path / name, tmp_path / f"{name}-eval")
        maps[name] = json.loads((tmp_path / f"{name}-eval" / "metrics.json").read_text())["bbox"]["bbox_mAP_50"]
    assert maps["tuned"] >= LEARNED_MAP50_FLOOR > maps["scratch"], maps
    init = json.loads((tmp_path / "tuned" / "init_from.json").read_text())
    assert init["model"] == f"det@{parent.version}" and init["source"] == "det@production" and init["remapped"] == {}
    assert init["lr"] == pytest.approx(0.008 * 0.25), "a trained model is fine-tuned at the config's fine-tuning rate"
    summary = json.loads((tmp_path / "tuned" / "summary.json").read_text())
    assert summary["init_from"]["model"] == f"det@{parent.version}" and summary["init_from"]["loaded"] == init["loaded"]
    assert not (tmp_path / "scratch" / "init_from.json").exists()
    record = register(tmp_path / "tuned", tmp_path / "tuned-eval", None, None, None, "det-tuned", store_uri=store)
    info = catalog.show(open_store(store), "models", "det-tuned", record["version"]).info
    assert info["lineage"]["parent_model"] == f"det@{parent.version}"


def test_init_from_that_does_not_resolve_is_named(learned_model, tmp_path, capsys):
    from admlops.pipelines.cli import main

    base = ["train", str(learned_model.dataset), str(tmp_path / "m"), "--max-iters", "1", "--init-from"]
    assert main([*base, "nope@v1", "--store", str(tmp_path / "store")]) == 2
    assert "nope@v1" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "missing.pth")]) == 3
    assert "missing.pth" in capsys.readouterr().err and not (tmp_path / "m").exists()
