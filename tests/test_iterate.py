"""Closing the loop (components/iterate): infer on a pool, score, select, report, export a labeling task, import the
vendor's labels, merge them into a new dataset version.

The labeling vendor is played by the synthetic generator's ground truth, returned in the exported task's own format
(CVAT for images 1.1, Label Studio JSON). Signals and selection run on constructed predictions whose answers are
known; only the inference and round-trip tests use a real (tiny) RTMDet."""
from __future__ import annotations

import copy
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from admlops import catalog, zoo
from admlops.components.convert.lake import COCO_ROLES
from admlops.components.iterate.formats import FORMATS
from admlops.components.iterate.infer import (SCORE_THR, Detector, _read_image, _unflip, equalise, infer, pool_frames,
                                             resolve_model)
from admlops.components.iterate.merge import merge
from admlops.components.iterate.predictions import Detections, FramePrediction, read_predictions, write_predictions
from admlops.components.iterate.report import report
from admlops.components.iterate.score import score
from admlops.components.iterate.select import select
from admlops.components.iterate.signals import SIGNALS, Context, evaluate
from admlops.components.iterate.task import LabelsRejected, export_task, import_labels
from admlops.errors import InputError, UsageError
from admlops.objectstore import open_store
from tests.conftest import admlops

CLASSES = ["Car", "Pedestrian", "Cyclist"]


# ---------------------------------------------------------------- data: a parent dataset and a pool, both synthetic KITTI


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """``admlops data synth kitti`` + ``data convert``: the parent dataset (10 frames) and a pool (8 other frames, in
    a folder named ``pool``: its ground truth plays the vendor's labels)."""
    root = tmp_path_factory.mktemp("iterate")
    for name, frames, seed in (("parent", 10, 1), ("pool", 8, 2)):
        admlops("data", "synth", "kitti", "--frames", frames, "--seed", seed, "--out", root / f"{name}-kitti")
        admlops("data", "convert", "--strict", root / f"{name}-kitti", root / name)
    return {"root": root, "parent": root / "parent", "pool": root / "pool"}


def ground_truth(pool: Path) -> dict[str, list[tuple[str, list[float], dict]]]:
    """Frame id -> (label, x1 y1 x2 y2, {truncated, occluded}) of the pool's COCO ground truth; an ignore region (one
    iscrowd annotation per category) once, labelled ``ignore``."""
    cats = {1: "Car", 2: "Pedestrian", 3: "Cyclist"}
    out = {}
    for split in ("train", "val"):
        coco = json.loads((pool / "annotations" / f"{split}.json").read_text())
        ids = {im["id"]: Path(im["file_name"]).stem for im in coco["images"]}
        out.update({f: [] for f in ids.values()})
        seen = set()
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            key = (a["image_id"], tuple(a["bbox"]))
            if a["iscrowd"] and key in seen:
                continue
            seen.add(key)
            attrs = {k: a["source"][k] for k in ("truncated", "occluded") if k in a["source"]}  # DontCare has none
            out[ids[a["image_id"]]].append(("ignore" if a["iscrowd"] else cats[a["category_id"]], [x, y, x + w, y + h], attrs))
    return out


def vendor_cvat(task: Path, gt: dict, dest: Path) -> Path:
    """The exported annotations.xml, every frame's boxes replaced by its ground truth: what CVAT exports after labelling."""
    tree = ET.parse(task / "annotations.xml")
    for image in tree.getroot().iter("image"):
        for box in list(image):
            image.remove(box)
        for label, (x1, y1, x2, y2), attrs in gt[Path(image.get("name")).stem]:
            box = ET.SubElement(image, "box", label=label, source="manual", occluded=str(int(attrs.get("occluded", 0) > 0)),
                                xtl=f"{x1:.2f}", ytl=f"{y1:.2f}", xbr=f"{x2:.2f}", ybr=f"{y2:.2f}", z_order="0")
            if label != "ignore":
                for name, value in attrs.items():
                    ET.SubElement(box, "attribute", name=name).text = str(value)
    ET.indent(tree)
    tree.write(dest, encoding="utf-8", xml_declaration=True)
    return dest


def vendor_labelstudio(task: Path, gt: dict, dest: Path) -> Path:
    """Label Studio's JSON export of the exported tasks, each with one annotation holding its ground truth."""
    tasks = json.loads((task / "tasks.json").read_text())
    frames = {f["frame"]: f for f in json.loads((task / "task.json").read_text())["frames"]}
    for t, item in enumerate(tasks):
        f = frames[item["data"]["frame"]]
        result = []
        for i, (label, (x1, y1, x2, y2), attrs) in enumerate(gt[f["frame"]]):
            rid = f"gt{i}"
            base = {"id": rid, "from_name": "label", "to_name": "image", "original_width": f["width"],
                    "original_height": f["height"]}
            result.append(base | {"type": "rectanglelabels", "value": {
                "x": 100 * x1 / f["width"], "y": 100 * y1 / f["height"], "width": 100 * (x2 - x1) / f["width"],
                "height": 100 * (y2 - y1) / f["height"], "rotation": 0, "rectanglelabels": [label]}})
            if label != "ignore":
                result.append(base | {"type": "number", "from_name": "truncated", "value": {"number": attrs["truncated"]}})
                result.append(base | {"type": "choices", "from_name": "occluded", "value": {"choices": [str(attrs["occluded"])]}})
        item.update(id=t + 1, annotations=[{"id": t + 1, "result": result, "was_cancelled": False, "ground_truth": False}])
    dest.write_text(json.dumps(tasks, indent=2))
    return dest


VENDORS = {"cvat": vendor_cvat, "labelstudio": vendor_labelstudio}


# ---------------------------------------------------------------- constructed predictions (no model)


def det(boxes, scores, labels, class_scores=None) -> Detections:
    return Detections.of(boxes, scores, labels, class_scores)


def frame(dets: Detections, flip: Detections | None = None, embedding=None, name: str = "f") -> FramePrediction:
    return FramePrediction(name, "", 1242, 375, dets, flip, None if embedding is None else np.asarray(embedding, float))


@pytest.fixture(scope="module")
def constructed(data, tmp_path_factory) -> dict[str, Path]:
    """Predictions for the pool's real images made from its ground truth (score 0.9, a confused box on odd frames),
    scored against the parent dataset and a selection of 4 frames: the inputs of export, import and report."""
    root = tmp_path_factory.mktemp("constructed")
    gt = ground_truth(data["pool"])
    rng = np.random.default_rng(0)
    preds = []
    for i, (fid, path) in enumerate(pool_frames(data["pool"])[0]):
        objs = [(CLASSES.index(lab), box) for lab, box, _ in gt[fid] if lab != "ignore"]
        cs = [[0.9 if k == lab else 0.02 for k in range(3)] for lab, _ in objs]
        if i % 2 and cs:
            cs[0] = [0.5, 0.5, 0.02]
        d = det([b for _, b in objs], [max(c) for c in cs], [int(np.argmax(c)) for c in cs], cs)
        preds.append(FramePrediction(fid, str(path), 1242, 375, d, d, rng.normal(size=16)))
    (root / "preds").mkdir()
    write_predictions(root / "preds", preds, {"classes": CLASSES, "model": {"name": "constructed", "version": "v0"},
                                              "pool": {"path": str(data["pool"]), "name": "pool", "frames": len(preds)}})
    score(root / "preds", data["parent"], root / "scores")
    select(root / "preds", root / "scores", root / "selection", budget=4)
    return {"preds": root / "preds", "scores": root / "scores", "selection": root / "selection", "gt": gt}


# ---------------------------------------------------------------- signals on cases with known answers


def approx(value: float):
    return pytest.approx(value, abs=1e-6)  # signal values are rounded to 6 decimals


def test_uncertainty_is_maximal_at_an_even_split_and_low_when_sure():
    ctx = Context.build(CLASSES)
    even = evaluate("uncertainty", frame(det([[0, 0, 10, 20]], [0.5], [0], [[0.5, 0.5, 0.0]])), ctx)
    sure = evaluate("uncertainty", frame(det([[0, 0, 10, 20]], [0.99], [0], [[0.99, 0.0, 0.0]])), ctx)
    assert even.value == approx(1.0) and "Car 0.50 vs Pedestrian 0.50" in even.reason
    assert sure.value < 0.1
    assert evaluate("uncertainty", frame(det([[0, 0, 10, 20]], [0.5], [0])), ctx).value == approx(1.0)  # no vectors
    assert evaluate("uncertainty", frame(det([], [], [])), ctx) == (0.0, "no boxes")
    # a confident Car that may also be a Pedestrian (class confusion) is more uncertain than a plain confident Car
    confused = evaluate("uncertainty", frame(det([[0, 0, 10, 20]], [0.9], [0], [[0.9, 0.45, 0.0]])), ctx)
    assert confused.value > 0.9 > evaluate("uncertainty", frame(det([[0, 0, 10, 20]], [0.9], [0], [[0.9, 0.0, 0.0]])), ctx).value


def test_flip_disagreement_is_zero_for_identical_views_and_one_for_a_missing_view():
    ctx = Context.build(CLASSES)
    d = det([[100, 100, 150, 200], [400, 120, 480, 180]], [0.9, 0.8], [0, 1])
    assert evaluate("flip", frame(d, d), ctx).value == approx(0.0)
    assert evaluate("flip", frame(d, det([], [], [])), ctx).value == approx(1.0)
    shifted = det([[110, 100, 160, 200], [400, 120, 480, 180]], [0.9, 0.8], [0, 1])  # first box IoU 40/60
    assert evaluate("flip", frame(d, shifted), ctx).value == approx(1 - (2 * 40 / 60 + 2) / 4)
    other_class = det(d.boxes, d.scores, [1, 0])
    assert evaluate("flip", frame(d, other_class), ctx).value == approx(1.0)
    assert evaluate("flip", frame(det([[0, 0, 5, 5]], [0.1], [0]), det([], [], [])), ctx).value == 0.0  # nothing detected


def test_rare_class_is_inverse_frequency_in_the_current_dataset():
    ctx = Context.build(CLASSES, {"Car": 100, "Pedestrian": 10, "Cyclist": 0})
    cyclist = evaluate("rare_class", frame(det([[0, 0, 10, 20]], [1.0], [2])), ctx)
    car = evaluate("rare_class", frame(det([[0, 0, 10, 20]], [1.0], [0])), ctx)
    assert cyclist.value == approx(1.0) and "Cyclist" in cyclist.reason
    assert car.value == approx(1 / 101)
    maybe_cyclist = frame(det([[0, 0, 10, 20]], [0.9], [0], [[0.9, 0.0, 0.4]]))  # argmax Car, but 0.4 Cyclist
    assert evaluate("rare_class", maybe_cyclist, ctx).value == approx(0.4)
    assert evaluate("rare_class", frame(det([[0, 0, 10, 20]], [1.0], [2])), Context.build(CLASSES)).value == 0.0


def test_crowding_grows_with_boxes_and_overlap():
    ctx = Context.build(CLASSES)
    apart = [[i * 100, 0, i * 100 + 50, 50] for i in range(8)]
    assert evaluate("crowding", frame(det([], [], [])), ctx).value == 0.0
    assert evaluate("crowding", frame(det(apart, [0.9] * 8, [0] * 8)), ctx).value == approx(0.5)
    piled = [[i * 10, 0, i * 10 + 50, 50] for i in range(4)]  # each overlaps its neighbours: counts twice
    assert evaluate("crowding", frame(det(piled, [0.9] * 4, [0] * 4)), ctx).value == approx(0.5)
    assert evaluate("crowding", frame(det(apart[:4], [0.9] * 4, [0] * 4)), ctx).value < 0.5
    assert evaluate("crowding", frame(det(apart, [0.1] * 8, [0] * 8)), ctx).value == 0.0  # not detected


def test_novelty_is_zero_for_a_dataset_frame_and_one_far_from_all():
    rng = np.random.default_rng(1)
    ref = np.abs(rng.normal(size=(20, 8)))  # positive features, as after a ReLU/SiLU
    ctx = Context.build(CLASSES, reference=([f"r{i}" for i in range(20)], ref))
    same = evaluate("novelty", frame(det([], [], []), embedding=ref[3] * 2), ctx)  # scale does not matter
    far = evaluate("novelty", frame(det([], [], []), embedding=-ref.mean(axis=0)), ctx)
    assert same.value == 0.0 and "r3" in same.reason
    assert far.value == 1.0
    assert evaluate("novelty", frame(det([], [], []), embedding=ref[0]), Context.build(CLASSES)).value == 0.0  # no reference


def test_every_signal_stays_in_range_with_a_reason():
    rng = np.random.default_rng(2)
    reference = ([f"r{i}" for i in range(5)], rng.normal(size=(5, 4)))
    ctx = Context.build(CLASSES, {"Car": 5, "Pedestrian": 2, "Cyclist": 1}, reference)
    for _ in range(30):
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, 1000, size=(n, 2))
        boxes = np.hstack([xy, xy + rng.uniform(1, 200, size=(n, 2))])
        cs = rng.uniform(size=(n, 3))
        d = det(boxes, cs.max(axis=1), cs.argmax(axis=1), cs)
        f = frame(d, det(boxes + rng.normal(0, 5, size=boxes.shape), d.scores, d.labels, cs), rng.normal(size=4))
        for name in SIGNALS:
            value, reason = evaluate(name, f, ctx)
            assert 0.0 <= value <= 1.0 and reason


# ---------------------------------------------------------------- selection


def write_pool(root: Path, uncertainty: list[float], embeddings: np.ndarray) -> tuple[Path, Path]:
    """A predictions directory and a scores directory with one signal (``uncertainty``) per frame."""
    preds = [FramePrediction(f"f{i:02d}", "", 100, 100, det([], [], []), None, e) for i, e in enumerate(embeddings)]
    (root / "preds").mkdir(parents=True)
    write_predictions(root / "preds", preds, {"classes": CLASSES})
    (root / "scores").mkdir()
    (root / "scores" / "scores.jsonl").write_text("".join(
        json.dumps({"frame": p.frame, "signals": {"uncertainty": {"score": u, "reason": f"u={u}"}}}) + "\n"
        for p, u in zip(preds, uncertainty, strict=True)))
    (root / "scores" / "summary.json").write_text(json.dumps({"signals": ["uncertainty"], "classes": CLASSES}))
    return root / "preds", root / "scores"


def test_selection_is_diverse_within_the_budget_and_says_why(tmp_path):
    rng = np.random.default_rng(3)
    scene = np.abs(rng.normal(size=32))
    dups = scene + rng.normal(0, 0.01, size=(10, 32))  # ten near-copies of one confusing scene
    distinct = np.abs(rng.normal(size=(5, 32))) * (rng.uniform(size=(5, 32)) > 0.5)  # five other scenes
    preds, scores = write_pool(tmp_path, [0.9] * 10 + [0.5] * 5, np.vstack([dups, distinct]))
    sel = select(preds, scores, tmp_path / "sel", budget=5)
    chosen = [c["frame"] for c in sel["frames"]]
    assert len(chosen) == len(set(chosen)) == 5
    n_dups = sum(int(f[1:]) < 10 for f in chosen)
    assert 1 <= n_dups <= 2, chosen  # one of the copies, then the other scenes
    assert chosen[0] < "f10" and sel["frames"][0]["rank"] == 1
    for c in sel["frames"]:
        value = c["signals"]["uncertainty"]["score"]
        assert c["drivers"] == ["uncertainty"] and c["reason"].startswith(f"uncertainty {value:.2f}: u={value}")
    assert sel["chosen_by_signal"] == {"uncertainty": 5}
    assert json.loads((tmp_path / "sel" / "selection.json").read_text())["frames"] == sel["frames"]
    top_k = select(preds, scores, tmp_path / "topk", budget=5, diversity=0.0)  # without the penalty: only copies
    assert all(int(c["frame"][1:]) < 10 for c in top_k["frames"])


def test_budget_and_empty_pool_are_usage_errors(tmp_path):
    preds, scores = write_pool(tmp_path / "p", [0.5] * 3, np.eye(3))
    for budget in (0, -1, 4):
        with pytest.raises(UsageError) as err:
            select(preds, scores, tmp_path / "sel", budget=budget)
        assert err.value.exit_code == 2
    empty_preds, empty_scores = write_pool(tmp_path / "e", [], np.zeros((0, 3)))
    with pytest.raises(UsageError, match="empty"):
        select(empty_preds, empty_scores, tmp_path / "sel", budget=1)
    assert not (tmp_path / "sel").exists()
    with pytest.raises(UsageError, match="weights"):
        select(preds, scores, tmp_path / "sel", budget=1, weights={"nope": 1.0})


def test_weights_name_the_conditions_wanted(tmp_path, capsys):
    """A team wanting more of a condition weighs its signal (``--weight SIGNAL=WEIGHT``, the pipelines'
    ``select_weights``): with novelty weighed 3 the novel scenes (n*) are chosen and each names novelty as its
    driver; at the default weights the uncertain ones (u*, a higher mean) are (the control); a malformed item, a
    negative weight, a signal named twice or one the scores lack exits 2 naming it."""
    from admlops.pipelines.cli import main

    values = {**{f"u{i}": (0.9, 0.3) for i in range(4)}, **{f"n{i}": (0.2, 0.7) for i in range(4)}}
    preds = [FramePrediction(f, "", 100, 100, det([], [], []), None, e) for f, e in zip(values, np.eye(8))]
    (tmp_path / "preds").mkdir()
    write_predictions(tmp_path / "preds", preds, {"classes": CLASSES})
    (tmp_path / "scores").mkdir()
    (tmp_path / "scores" / "scores.jsonl").write_text("".join(json.dumps({"frame": f, "signals": {
        "uncertainty": {"score": u, "reason": f"u={u}"}, "novelty": {"score": n, "reason": f"n={n}"}}}) + "\n"
        for f, (u, n) in values.items()))
    (tmp_path / "scores" / "summary.json").write_text(json.dumps({"signals": ["uncertainty", "novelty"],
                                                                   "classes": CLASSES}))

    def run(out: str, *weights: str) -> dict:
        assert main(["iterate", "select", str(tmp_path / "preds"), str(tmp_path / "scores"), str(tmp_path / out),
                     "--budget", "3", *(f"--weight={w}" for w in weights)]) == 0
        return json.loads((tmp_path / out / "selection.json").read_text())

    novel = run("novel", "novelty=3")
    assert all(c["frame"].startswith("n") and c["drivers"] == ["novelty"] for c in novel["frames"])
    assert novel["weights"] == {"uncertainty": 1.0, "novelty": 3.0} and novel["chosen_by_signal"]["novelty"] == 3
    assert all(c["frame"].startswith("u") for c in run("default")["frames"])
    for bad, named in (("novelty", "weight 'novelty': expected SIGNAL=WEIGHT"), ("novelty=-1", "'novelty=-1'"),
                       ("novelty=nan", "'novelty=nan'"), ("weather=2", "weather")):
        assert main(["iterate", "select", str(tmp_path / "preds"), str(tmp_path / "scores"), str(tmp_path / "bad"),
                     "--budget", "3", "--weight", bad]) == 2
        assert named in capsys.readouterr().err
    assert main(["iterate", "select", str(tmp_path / "preds"), str(tmp_path / "scores"), str(tmp_path / "bad"),
                 "--budget", "3", "--weight", "novelty=1", "--weight", "novelty=2"]) == 2
    assert "signal 'novelty' is weighed twice" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

# ---------------------------------------------------------------- report


def test_report_is_self_contained(constructed, tmp_path):
    summary = report(constructed["preds"], constructed["scores"], constructed["selection"], tmp_path / "report")
    html = (tmp_path / "report" / "report.html").read_text()
    assert summary["chosen"] == summary["thumbnails"] == 4
    assert html.count("src='data:image/png;base64,") == 4 + len(summary["plots"])
    assert "src='http" not in html and "href=" not in html
    md = (tmp_path / "report" / "report.md").read_text()
    assert md.count("\n| ") >= 4 + 1 + len(SIGNALS) and "| uncertainty |" in md


# ---------------------------------------------------------------- export and import: the labeling standard, bad input


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_writes_the_labeling_standard_into_the_task(constructed, fmt, tmp_path):
    record = export_task(constructed["selection"], constructed["preds"], tmp_path / "task", fmt)
    task = tmp_path / "task"
    assert len(record["frames"]) == 4 and all((task / "images" / f["file"]).is_file() for f in record["frames"])
    assert record["labels"] == CLASSES + ["ignore"] and record["attributes"] == ["truncated", "occluded"]
    assert sum(f["pre_annotations"] for f in record["frames"]) > 0
    if fmt == "cvat":
        root = ET.parse(task / "annotations.xml").getroot()
        assert root.findtext("version") == "1.1"
        labels = root.find("meta/task/labels")
        car = next(lab for lab in labels if lab.findtext("name") == "Car")
        occl = next(a for a in car.iter("attribute") if a.findtext("name") == "occluded")
        assert occl.findtext("input_type") == "select" and occl.findtext("values").split("\n") == ["0", "1", "2", "3"]
        boxes = list(root.iter("box"))
        assert boxes and {b.get("source") for b in boxes} == {"auto"} and {b.get("label") for b in boxes} <= set(CLASSES)
        assert int(root.findtext("meta/task/size")) == 4
    else:
        config = ET.parse(task / "labeling_config.xml").getroot()
        rect = config.find("RectangleLabels")
        assert [lab.get("value") for lab in rect] == CLASSES + ["ignore"]
        assert {c.get("name") for c in config.iter() if c.get("perRegion") == "true"} == {"truncated", "occluded"}
        tasks = json.loads((task / "tasks.json").read_text())
        result = [r for t in tasks for p in t["predictions"] for r in p["result"]]
        names = {(r["from_name"], r["to_name"], r["type"]) for r in result}
        assert result and names == {(rect.get("name"), rect.get("toName"), "rectanglelabels")}
        assert config.find("Image").get("name") == rect.get("toName")
        assert all(0 <= r["value"]["x"] <= 100 and 0 < r["value"]["width"] <= 100 for r in result)
        project = json.loads((task / "project.json").read_text())
        assert project["label_config"].strip() == (task / "labeling_config.xml").read_text().strip()
        assert "Minimum box: 4 x 10 px" in project["expert_instruction"]
    assert "Minimum box: 4 x 10 px" in (task / "spec.md").read_text()


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def _bad_cvat(returned: Path, case: str) -> int:
    """Spoil one element of a returned annotations.xml the way ``case`` says; the line a problem must be named at."""
    text = returned.read_text()
    marker = '<box label="Car"'
    if case == "malformed":
        lines = text.splitlines()
        returned.write_text("\n".join(lines[: len(lines) // 2]) + "\n<image id=\"9\" <box/>\n")
        return len(lines) // 2 + 1
    if case == "unknown_frame":
        stranger = '  <image id="99" name="999999.png" width="1242" height="375" />\n'
        returned.write_text(text.replace("</annotations>", stranger + "</annotations>"))
        return _line_of(returned, "999999.png")
    if case == "unmapped_class":
        returned.write_text(text.replace(marker, '<box label="Truck"', 1))
        return _line_of(returned, 'label="Truck"')
    if case == "outside_image":
        first = text.index(marker)
        start = text.index('xbr="', first)
        end = text.index('"', start + 5)
        returned.write_text(text[:start] + 'xbr="1300.00' + text[end:])
        return _line_of(returned, 'xbr="1300.00"')
    if case == "required_field":
        first = text.index(marker)
        start = text.index('<attribute name="occluded">', first)
        end = text.index("</attribute>", start) + len("</attribute>")
        returned.write_text(text[:start] + text[end:])
        return text[:first].count("\n") + 1
    raise AssertionError(case)


def _bad_labelstudio(returned: Path, case: str) -> int:
    tasks = json.loads(returned.read_text())
    if case == "malformed":
        text = returned.read_text()
        cut = text.index('"annotations"')
        returned.write_text(text[:cut] + '"annotations" [' + text[cut + len('"annotations": ['):])
        return text[:cut].count("\n") + 1
    result = tasks[0]["annotations"][0]["result"]
    region = next(r for r in result if r["type"] == "rectanglelabels" and r["value"]["rectanglelabels"] != ["ignore"])
    for r in result:  # the region and its attribute results share an id: give them one we can find
        if r["id"] == region["id"] and r is not region:
            r["id"] = "bad-region"
    region["id"] = "bad-region"
    if case == "unknown_frame":
        extra = copy.deepcopy(tasks[0])
        extra["data"] = {"image": "/data/local-files/?d=images/999999.png", "frame": "999999"}
        tasks.append(extra)
    elif case == "unmapped_class":
        region["value"]["rectanglelabels"] = ["Truck"]
    elif case == "outside_image":
        region["value"].update(x=99.0, width=5.0)
    elif case == "required_field":
        result[:] = [r for r in result if not (r["id"] == "bad-region" and r["from_name"] == "occluded")]
    returned.write_text(json.dumps(tasks, indent=2))
    if case == "unknown_frame":
        return _line_of(returned, '"frame": "999999"') - 3  # the task object opens 3 lines above (data, image)
    return _line_of(returned, '"id": "bad-region"') - 1  # the result object opens on the line above its id


@pytest.fixture(scope="module", params=list(FORMATS))
def exported(request, constructed, tmp_path_factory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp(f"task-{request.param}")
    export_task(constructed["selection"], constructed["preds"], root / "task", request.param)
    return request.param, root / "task"


def test_returned_ground_truth_imports_cleanly(exported, constructed, tmp_path):
    fmt, task = exported
    returned = VENDORS[fmt](task, constructed["gt"], tmp_path / ("returned.xml" if fmt == "cvat" else "returned.json"))
    summary = import_labels(task, returned, tmp_path / "labels")
    frames = json.loads((task / "task.json").read_text())["frames"]
    assert summary["frames"] == 4 and summary["objects"] == sum(len(constructed["gt"][f["frame"]]) for f in frames)
    labels = json.loads((tmp_path / "labels" / "labels.json").read_text())["frames"]
    for f in labels:
        want = sorted((lab, [round(v, 2) for v in box]) for lab, box, _ in constructed["gt"][f["frame"]])
        got = sorted((o["label"], [round(v, 2) for v in o["bbox"]]) for o in f["objects"])
        assert got == want
        assert all(o["line"] for o in f["objects"])


@pytest.mark.parametrize("case", ["malformed", "unknown_frame", "unmapped_class", "outside_image", "required_field"])
def test_bad_returned_labels_name_file_and_line_and_create_nothing(exported, constructed, case, tmp_path):
    fmt, task = exported
    returned = VENDORS[fmt](task, constructed["gt"], tmp_path / ("returned.xml" if fmt == "cvat" else "returned.json"))
    line = (_bad_cvat if fmt == "cvat" else _bad_labelstudio)(returned, case)
    with pytest.raises(InputError) as err:
        import_labels(task, returned, tmp_path / "labels")
    assert err.value.exit_code == 3
    assert not (tmp_path / "labels").exists() and not list(tmp_path.glob(".labels*"))
    assert f"{returned}:{line}" in str(err.value), str(err.value)
    if case == "malformed":
        assert not isinstance(err.value, LabelsRejected) and "malformed" in str(err.value)
    else:
        assert isinstance(err.value, LabelsRejected)
        assert [(v["rule"], v["line"]) for v in err.value.violations] == [(case, line)], err.value.violations
        if fmt == "labelstudio" and case != "unknown_frame":
            assert err.value.violations[0]["result"] == "bad-region" and err.value.violations[0]["task"] == 0


def test_missing_frames_are_not_taken_as_empty(exported, constructed, tmp_path):
    fmt, task = exported
    returned = VENDORS[fmt](task, constructed["gt"], tmp_path / ("returned.xml" if fmt == "cvat" else "returned.json"))
    if fmt == "cvat":
        tree = ET.parse(returned)
        tree.getroot().remove(tree.getroot().find("image"))
        tree.write(returned)
    else:
        returned.write_text(json.dumps(json.loads(returned.read_text())[1:]))
    with pytest.raises(LabelsRejected) as err:
        import_labels(task, returned, tmp_path / "labels")
    assert [v["rule"] for v in err.value.violations] == ["missing_frame"]


# ---------------------------------------------------------------- real inference: a tiny RTMDet, from the zoo


@pytest.fixture(scope="module")
def zoo_model(data) -> dict:
    """``admlops train`` for 2 iterations on the parent dataset, published in a store's zoo as ``tiny@candidate``."""
    model = data["root"] / "model"
    admlops("train", data["parent"], model, "--max-iters", 2, "--batch-size", 2)
    store = str(data["root"] / "store")
    version = zoo.publish(open_store(store), "tiny", model, zoo.lineage(None, model / "config.py"))
    zoo.promote(open_store(store), "tiny", version.version, "candidate")
    return {"dir": model, "store": store, "version": version}


@pytest.fixture(scope="module")
def inferred(data, zoo_model) -> Path:
    out = data["root"] / "predictions"
    infer("tiny@candidate", data["pool"], out, reference=data["parent"], store=zoo_model["store"], batch_size=4)
    return out


def test_zoo_model_is_pulled_by_alias(zoo_model, tmp_path):
    path, record = resolve_model("tiny@candidate", zoo_model["store"], tmp_path)
    assert (path / "model.pth").read_bytes() == (zoo_model["dir"] / "model.pth").read_bytes()
    assert record == zoo_model["version"].ref() | {"ref": "tiny@candidate"}
    with pytest.raises(UsageError):
        resolve_model("no-such-dir", zoo_model["store"], tmp_path)


def test_infer_keeps_boxes_class_vectors_flips_and_embeddings(inferred, data, zoo_model):
    preds, summary = read_predictions(inferred)
    assert [p.frame for p in preds] == [f for f, _ in pool_frames(data["pool"])[0]] and summary["classes"] == CLASSES
    assert summary["model"]["name"] == "tiny" and summary["model"]["version"] == zoo_model["version"].version
    for p in preds:
        d = p.dets
        assert len(d.scores) and d.scores.min() >= SCORE_THR and p.flip is not None
        assert d.class_scores.shape == (len(d.scores), 3)
        np.testing.assert_allclose(d.class_scores[np.arange(len(d.labels)), d.labels], d.scores, atol=2e-5)
        assert (d.boxes[:, [0, 2]] >= -0.01).all() and (d.boxes[:, [0, 2]] <= p.width + 0.01).all()
        assert np.linalg.norm(p.embedding) == pytest.approx(1.0, abs=1e-5)
        assert np.linalg.norm(p.content) == pytest.approx(1.0, abs=1e-5) and p.content.shape != p.embedding.shape
    ref = np.load(inferred / "reference.npy")  # the parent's train split: what the model learned from
    train = [Path(im["file_name"]).stem for im in json.loads((data["parent"] / "annotations" / "train.json").read_text())["images"]]
    assert 0 < len(train) < 10 and ref.shape == (len(train), preds[0].embedding.shape[0])
    assert json.loads((inferred / "reference_frames.json").read_text()) == train
    # the class probe: fitted on the train split's labeled boxes, crowd regions left out; a probability per box
    coco = json.loads((data["parent"] / "annotations" / "train.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    labeled = [names[a["category_id"]] for a in coco["annotations"] if not a["iscrowd"]]
    assert len(labeled) < len(coco["annotations"])
    assert summary["probe"]["exemplars"] == {c: labeled.count(c) for c in CLASSES}
    for p in preds:
        assert p.dets.probe_scores.shape == (len(p.dets.scores), 3)
        np.testing.assert_allclose(p.dets.probe_scores.sum(axis=1), 1.0, atol=1e-4)


def test_a_reference_with_a_broken_annotation_is_named_and_nothing_is_published(data, zoo_model, tmp_path):
    reference = tmp_path / "parent"
    shutil.copytree(data["parent"], reference)
    ann = reference / "annotations" / "train.json"
    coco = json.loads(ann.read_text())
    del coco["annotations"][0]["bbox"]
    ann.write_text(json.dumps(coco))
    with pytest.raises(InputError, match="not a COCO annotation file") as err:
        infer(zoo_model["dir"], data["pool"], tmp_path / "preds", reference=reference)
    assert err.value.path == str(ann) and not (tmp_path / "preds").exists()


def test_infer_boxes_are_what_the_model_predicts(inferred, zoo_model):
    """Detector.detect gives the boxes, scores and labels of mmdet's own inference_detector (model.predict) at the
    same score threshold, on a frame and on its mirror image, with class vectors whose winning entry is the box's
    score; and infer's stored detections are those (up to the order of tied scores: a 2-iteration model scores
    most boxes alike, and a batch of 8 rounds differently from a batch of 1)."""
    from mmdet.apis import inference_detector
    from mmengine.config import Config

    preds, _ = read_predictions(inferred)
    detector = Detector(zoo_model["dir"], "cpu")
    detector.model.cfg = Config.fromfile(str(zoo_model["dir"] / "config.py"))
    detector.model.bbox_head.test_cfg.score_thr = SCORE_THR
    image = _read_image(Path(preds[0].image))
    mirror = np.ascontiguousarray(image[:, ::-1])
    for img, stored in ((image, preds[0].dets), (mirror, _unflip(preds[0].flip, preds[0].width))):
        (mine,), emb = detector.detect([img])
        want = inference_detector(detector.model, img).pred_instances
        np.testing.assert_allclose(mine.scores, want.scores.numpy(), atol=1e-6)
        np.testing.assert_allclose(mine.boxes, want.bboxes.numpy(), atol=1e-3)
        np.testing.assert_array_equal(mine.labels, want.labels.numpy())
        np.testing.assert_allclose(mine.class_scores[np.arange(len(mine.labels)), mine.labels], mine.scores, atol=1e-5)
        np.testing.assert_allclose(np.sort(stored.scores), np.sort(mine.scores), atol=1e-4)
        assert emb.shape == (1, preds[0].embedding.shape[0])
    np.testing.assert_allclose(_unflip(det([[10, 5, 30, 20]], [0.5], [0]), 100).boxes, [[70, 5, 90, 20]])


def test_appearance_embedding_sees_exposure_and_content_embedding_does_not(inferred, zoo_model):
    """An underexposed copy of a frame (pixels x 0.3) is far from the frame in the appearance embedding (novelty:
    farther than another frame is) but near it in the content embedding (diversity: nearer than another frame),
    and the stored embeddings are the detector's."""
    preds, _ = read_predictions(inferred)
    detector = Detector(zoo_model["dir"], "cpu")
    a, b = (_read_image(Path(p.image)) for p in preds[:2])
    dark = (a * 0.3).astype(np.uint8)
    appearance, content = detector.embed([a, dark, b]), detector.content([a, dark, b])
    np.testing.assert_allclose(appearance[0], preds[0].embedding, atol=1e-4)
    np.testing.assert_allclose(content[0], preds[0].content, atol=1e-4)

    def dist(e, i, j):
        return 1.0 - float(e[i] @ e[j])

    assert dist(appearance, 0, 1) > dist(appearance, 0, 2)
    assert dist(content, 0, 1) < 0.5 * dist(content, 0, 2)
    np.testing.assert_allclose(equalise(dark).mean(axis=(0, 1)), 128, atol=3)


# ---------------------------------------------------------------- the round trip: pool -> labels -> new dataset versions


def test_round_trip_makes_new_dataset_versions_with_lineage(data, inferred, zoo_model, tmp_path):
    store = open_store(zoo_model["store"])
    gt = ground_truth(data["pool"])
    score(inferred, data["parent"], tmp_path / "scores")
    sel = select(inferred, tmp_path / "scores", tmp_path / "sel", budget=3)
    chosen = [c["frame"] for c in sel["frames"]]
    assert sel["evidence"].startswith("the class probe's probabilities (fitted on the reference's labeled boxes: Car ")
    parent = data["parent"]
    versions = []
    for fmt, prefix in (("cvat", None), ("labelstudio", "pool2")):  # the second iteration builds on the first
        export_task(tmp_path / "sel", inferred, tmp_path / f"task-{fmt}", fmt)
        returned = VENDORS[fmt](tmp_path / f"task-{fmt}", gt, tmp_path / f"returned-{fmt}.{'xml' if fmt == 'cvat' else 'json'}")
        import_labels(tmp_path / f"task-{fmt}", returned, tmp_path / f"labels-{fmt}")
        result = merge(tmp_path / f"labels-{fmt}", parent, tmp_path / f"merged-{fmt}", zoo_model["store"], prefix=prefix)
        versions.append(result)
        parent = f"{result['dataset_version']['name']}@{result['dataset_version']['version']}"
    first, second = versions
    parent_version = catalog.push(store, "datasets", "parent", data["parent"], roles=COCO_ROLES)  # stored: the same version
    v1 = catalog.show(store, "datasets", first["dataset_version"]["name"], first["dataset_version"]["version"])
    v2 = catalog.show(store, "datasets", second["dataset_version"]["name"], second["dataset_version"]["version"])
    assert v1.info["lineage"]["parent"] == parent_version.ref() and v2.info["lineage"]["parent"] == v1.ref()
    lineage = v1.info["lineage"]
    assert lineage["model"]["name"] == "tiny" and lineage["model"]["version"] == zoo_model["version"].version
    assert lineage["pool"]["name"] == "pool" and lineage["task"]["format"] == "cvat"
    assert [c["frame"] for c in lineage["selection"]["frames"]] == chosen
    assert all(c["reason"] and c["signals"] for c in lineage["selection"]["frames"])
    assert v2.info["lineage"]["new_frames"] == {f: f"pool2-{f}" for f in chosen}

    # v1's content, pulled back from the store: the parent's frames, val untouched, the chosen frames added to train
    catalog.pull(store, "datasets", v1.name, v1.version, tmp_path / "v1")
    pulled = tmp_path / "v1"
    old = {s: json.loads((data["parent"] / "annotations" / f"{s}.json").read_text()) for s in ("train", "val")}
    new = {s: json.loads((pulled / "annotations" / f"{s}.json").read_text()) for s in ("train", "val")}
    assert new["val"] == old["val"]
    assert new["train"]["images"][: len(old["train"]["images"])] == old["train"]["images"]
    added = new["train"]["images"][len(old["train"]["images"]):]
    assert [Path(im["file_name"]).stem for im in added] == [f"pool-{f}" for f in chosen]
    pool_images = {p.stem: p for p in (data["pool"] / "images").iterdir()}
    for im in added:
        fid = Path(im["file_name"]).stem.removeprefix("pool-")
        assert (pulled / im["file_name"]).read_bytes() == pool_images[fid].read_bytes()
        anns = [a for a in new["train"]["annotations"] if a["image_id"] == im["id"]]
        got = sorted((a["category_id"], a["iscrowd"], [round(v, 2) for v in a["bbox"]]) for a in anns)
        want = []
        for label, (x1, y1, x2, y2), _ in gt[fid]:
            box = [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]
            want += [(k, 1, box) for k in (1, 2, 3)] if label == "ignore" else [(CLASSES.index(label) + 1, 0, box)]
        assert len(got) == len(want)
        for g, w in zip(got, sorted(want), strict=True):
            assert g[:2] == w[:2] and np.allclose(g[2], w[2], atol=0.011)
    splits = (pulled / "splits" / "train.txt").read_text().split()
    assert splits[-3:] == [f"pool-{f}" for f in chosen]
    import pyarrow.parquet as pq

    rows = pq.read_table(pulled / "index.parquet").to_pylist()
    parent_rows = pq.read_table(data["parent"] / "index.parquet").num_rows
    assert len(rows) == parent_rows + sum(len(gt[f]) for f in chosen)
    summary = json.loads((pulled / "summary.json").read_text())
    assert summary["frames"] == {"train": len(new["train"]["images"]), "val": len(old["val"]["images"])}

    # a valid input of the detection2d pipeline: mmdet builds the training set from it
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from admlops.mmconfig import use_dataset

    register_all_modules()
    cfg = Config.fromfile(str(zoo_model["dir"] / "config.py"))
    use_dataset(cfg, pulled)
    train_set = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(train_set) == len(new["train"]["images"])
    assert "inputs" in train_set[len(train_set) - 1]  # an added frame loads through the training pipeline


def test_merge_refuses_a_frame_id_the_parent_has(data, constructed, tmp_path):
    export_task(constructed["selection"], constructed["preds"], tmp_path / "task", "cvat")
    returned = vendor_cvat(tmp_path / "task", constructed["gt"], tmp_path / "returned.xml")
    import_labels(tmp_path / "task", returned, tmp_path / "labels")
    with pytest.raises(InputError, match="two frames have the id"):
        merge(tmp_path / "labels", data["parent"], tmp_path / "merged", str(tmp_path / "store"), prefix="")  # 0000xx in both
    assert not (tmp_path / "merged").exists()


# ---------------------------------------------------------------- KFP components


def test_components_compile(monkeypatch, tmp_path):
    """Each step's KFP component compiles, with its function's inputs and outputs (an image is mapped for it in
    admlops/images.py, or here a stand-in until it is)."""
    import importlib
    import sys

    import yaml
    from kfp import compiler

    from admlops import images

    for step in ("iterate", "iterate-infer"):
        if step not in images.COMPONENT_IMAGES:
            monkeypatch.setitem(images.COMPONENT_IMAGES, step, ("cpu", "cpu"))
    monkeypatch.delitem(sys.modules, "admlops.components.iterate.component", raising=False)
    component = importlib.import_module("admlops.components.iterate.component")
    for name in ("infer", "score", "select", "report", "export_task", "import_labels", "merge"):
        compiler.Compiler().compile(getattr(component, name), str(tmp_path / f"{name}.yaml"))
        spec = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())
        assert spec["deploymentSpec"]["executors"], name
    infer_spec = yaml.safe_load((tmp_path / "infer.yaml").read_text())["root"]["inputDefinitions"]
    assert infer_spec["artifacts"]["model"]["isOptional"] and "pool" in infer_spec["parameters"]
    monkeypatch.delitem(sys.modules, "admlops.components.iterate.component")
