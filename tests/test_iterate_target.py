"""Mining aimed at what the team is short of (components/iterate/target.py, select.py): target classes with a share of
the chosen boxes, a budget counted in boxes, the per-class comparison with a random pick, and the bad input.

Everything runs on constructed predictions (no model): a pool where the target class (Cyclist) sits alone in sparse
frames, and crowded, uncertain frames hold mostly other classes (and a couple of Cyclists each)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from admlops.components.iterate import probe
from admlops.components.iterate.predictions import Detections, FramePrediction, write_predictions
from admlops.components.iterate.report import report
from admlops.components.iterate.score import score
from admlops.components.iterate.select import select
from admlops.components.iterate.target import frame_boxes, parse_targets
from admlops.errors import UsageError
from admlops.pipelines.cli import main

CLASSES = ["Car", "Pedestrian", "Cyclist"]
W, H = 400, 120


def _box(k: int) -> list[float]:
    return [k * 40 + 2, 20, k * 40 + 32, 90]  # side by side, no overlap


# 8 boxes: 5 sure Cars / Pedestrians, one Car the model hesitates on (Car 0.5 / Pedestrian 0.45), two Cyclists
CROWDED = [[0.9, 0.02, 0.01], [0.02, 0.9, 0.01], [0.9, 0.02, 0.01], [0.02, 0.9, 0.01], [0.9, 0.03, 0.01],
           [0.5, 0.45, 0.02], [0.03, 0.05, 0.9], [0.02, 0.05, 0.9]]


SPARSE = {"s0": [[0.01, 0.03, 0.9]], "s1": [[0.02, 0.05, 0.8]], "s2": [[0.01, 0.6, 0.4]],  # s2: top label Pedestrian
          "s3": [[0.05, 0.1, 0.7]]}
QUIET = {"q0": [[0.95, 0.01, 0.01]], "q1": [[0.02, 0.95, 0.01]], "q2": [[0.95, 0.01, 0.01], [0.01, 0.95, 0.01]]}


def pool_vectors(crowded_frames: int = 4, sparse: bool = True) -> dict[str, list[list[float]]]:
    out = {f"c{i}": CROWDED for i in range(crowded_frames)}
    return out | (SPARSE | QUIET if sparse else {})


def write_pool(root: Path, vectors: dict[str, list[list[float]]]) -> tuple[Path, Path]:
    """Predictions (real image files; every frame's boxes and class vectors as given, the same on the mirror image;
    embeddings all orthogonal, so no diversity penalty) and score's output against a dataset whose train split is
    short of Cyclists."""
    preds = []
    onehot = np.eye(len(vectors))
    (root / "images").mkdir(parents=True)
    for frame, vs in vectors.items():
        image = root / "images" / f"{frame}.png"
        Image.new("RGB", (W, H), (90, 90, 95)).save(image)
        cs = np.array(vs, dtype=np.float64)
        d = Detections.of([_box(k) for k in range(len(vs))], cs.max(axis=1), cs.argmax(axis=1), cs)
        k = len(preds)
        preds.append(FramePrediction(frame, str(image), W, H, d, d, onehot[k], onehot[k]))
    (root / "preds").mkdir()
    write_predictions(root / "preds", preds, {"classes": CLASSES})
    dataset = root / "dataset"
    dataset.mkdir()
    (dataset / "summary.json").write_text(json.dumps({"categories": CLASSES, "definition": "kitti-3class", "objects": {
        "train": {"Car": 400, "Pedestrian": 150, "Cyclist": 12}}}))
    score(root / "preds", dataset, root / "scores")
    return root / "preds", root / "scores"


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[Path, Path]:
    return write_pool(tmp_path_factory.mktemp("target"), pool_vectors())


def frames(sel: dict) -> list[str]:
    return [c["frame"] for c in sel["frames"]]


# ---------------------------------------------------------------- boxes and expected class counts


def test_boxes_of_one_object_merge_and_any_class_counts_as_evidence():
    one = [10, 10, 50, 90]
    d = Detections.of([one, [12, 10, 50, 90], [200, 10, 240, 90], [300, 10, 340, 90]], [0.6, 0.4, 0.9, 0.1], [1, 2, 0, 2],
                      [[0.1, 0.6, 0.35], [0.1, 0.3, 0.4], [0.9, 0.01, 0.02], [0.0, 0.0, 0.1]])
    b = frame_boxes(d, 3, 0.3)
    assert b.count == 2 and b.cost == 2  # the Pedestrian and the Cyclist box of one object are one; 0.1 is not detected
    # each object's vector (max over its boxes) normalised: [0.1, 0.6, 0.4] / 1.1 and [0.9, 0.01, 0.02] / 0.93
    np.testing.assert_allclose(b.expected(), [0.1 / 1.1 + 0.9 / 0.93, 0.6 / 1.1 + 0.01 / 0.93, 0.4 / 1.1 + 0.02 / 0.93])
    assert b.expected().sum() == pytest.approx(b.count)
    np.testing.assert_array_equal(b.by_class(), [1, 1, 0])
    empty = frame_boxes(Detections.of([], [], [], []), 3, 0.3)
    assert empty.count == 0 and empty.cost == 1 and empty.expected().tolist() == [0, 0, 0]
    no_vectors = frame_boxes(Detections.of([one], [0.7], [2]), 3, 0.3)  # labels and scores only
    np.testing.assert_allclose(no_vectors.expected(), [0, 0, 1.0])

    probed = Detections.of([one, [12, 10, 50, 90]], [0.6, 0.4], [1, 2], [[0.1, 0.6, 0.35], [0.1, 0.3, 0.4]],
                           [[0.05, 0.25, 0.7], [0.1, 0.1, 0.8]])  # the probe's probabilities win over the head's
    np.testing.assert_allclose(frame_boxes(probed, 3, 0.3).expected(), np.array([0.1, 0.25, 0.8]) / 1.15)
    np.testing.assert_allclose(Detections.from_json(probed.to_json()).probe_scores, probed.probe_scores)


# ---------------------------------------------------------------- the class probe (probe.py)


def _clusters(rng, mu, counts):
    return (np.concatenate([mu[c] + rng.normal(0, 1, (n, mu.shape[1])) for c, n in enumerate(counts)]),
            np.repeat(np.arange(len(counts)), counts))


def test_the_balanced_probe_finds_a_rare_class_an_unweighted_fit_misses():
    """Cars, Pedestrians and 8 Cyclists near the Pedestrians in a 16-d feature space: weighing the classes equally,
    the probe calls most new Cyclists Cyclists and few Pedestrians; the same fit unweighted (the control) calls
    most Cyclists something else."""
    import torch

    rng = np.random.default_rng(0)
    mu = rng.normal(0, 1, (3, 16))
    mu[2] = mu[1] + 0.675 * rng.normal(0, 1, 16)
    x, y = _clusters(rng, mu, [300, 200, 8])
    p, why = probe.fit(x, y, CLASSES)
    assert why == "" and p.exemplars == (300, 200, 8) and p.penalty in probe.PENALTIES and p.balanced_accuracy > 0.7
    test, truth = _clusters(rng, mu, [0, 300, 300])
    q = p(test)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    assert (q[truth == 2].argmax(axis=1) == 2).mean() > 0.6 and (q[truth == 1].argmax(axis=1) == 2).mean() < 0.15
    w, b = probe._fit(torch.as_tensor(x), torch.as_tensor(y), torch.ones(len(y), dtype=torch.float64), 3, p.penalty)
    unweighted = torch.softmax(torch.as_tensor(test) @ w + b, dim=1).numpy()
    assert (unweighted[truth == 2].argmax(axis=1) == 2).mean() < 0.35
    none, why = probe.fit(x[:-6], y[:-6], CLASSES)  # 2 Cyclists: fewer than the folds
    assert none is None and "Cyclist 2" in why
    many = np.repeat([0, 1, 2], [probe.MAX_PER_CLASS + 100, 7, 0])  # a common class is sampled, a rare one kept whole
    kept = probe.sample_exemplars(many, 3)
    assert np.bincount(many[kept], minlength=3).tolist() == [probe.MAX_PER_CLASS, 7, 0] and (np.diff(kept) > 0).all()


def test_probe_features_pool_the_box_at_each_stages_stride():
    """Feature maps whose two channels are their own x and y coordinates: each bin of a box's RoIAlign is the bin's
    centre in the map's coordinates, wherever the image was resized and whatever the stage's stride (a wrong
    scale or stride moves the centres)."""
    import torch

    width = 64  # the network input; the original image was 128 wide (scale 0.5)
    stages = []
    for stride in (8, 16):
        ys, xs = torch.meshgrid(torch.arange(width // stride), torch.arange(width // stride), indexing="ij")
        stages.append(torch.stack([xs, ys]).float()[None])
    box = np.array([[16.0, 32.0, 80.0, 96.0]])  # original pixels; in the input: 8..40 x 16..48
    (feats,) = probe.roi_features(stages, [box], [(0.5, 0.5)], width)
    for k, stride in enumerate((8, 16)):
        x0, y0, x1, y1 = np.array([8, 16, 40, 48]) / stride - 0.5  # aligned: pixel centres at +0.5
        cx = [x0 + (x1 - x0) * (i + 0.5) / 2 for i in range(2)]
        cy = [y0 + (y1 - y0) * (i + 0.5) / 2 for i in range(2)]
        want = np.array([cx[0], cx[1], cx[0], cx[1], cy[0], cy[0], cy[1], cy[1]])
        np.testing.assert_allclose(feats[0, 8 * k : 8 * k + 8], want / np.linalg.norm(want) / np.sqrt(2), atol=1e-5)


def test_targets_parse_with_shares():
    assert parse_targets(["Cyclist", "Pedestrian=0.25"]) == {"Cyclist": 1.0, "Pedestrian": 0.25}
    assert parse_targets("Cyclist=0.3, Car") == {"Cyclist": 0.3, "Car": 1.0}
    assert parse_targets("") == {} and parse_targets(None) == {}


# ---------------------------------------------------------------- selection with and without targets


def test_without_a_target_the_selection_is_unchanged(pool):
    preds, scores = pool
    sel = select(preds, scores, pool[0].parent / "plain", budget=3)
    assert set(frames(sel)) <= {"c0", "c1", "c2", "c3"}  # crowded and uncertain: what the signals rank first
    assert sel["targets"] == {} and "target" not in sel["chosen_by_signal"]
    assert all(c["drivers"] and "target" not in c["drivers"] for c in sel["frames"])
    by_box = select(preds, scores, pool[0].parent / "plain-boxes", budget_boxes=24)
    assert frames(by_box) == frames(sel)  # the same order, spending 8 boxes per frame


def test_a_target_chooses_the_sparse_frames_under_a_box_budget(pool):
    preds, scores = pool
    sel = select(preds, scores, pool[0].parent / "boxes", budget_boxes=12, targets=["Cyclist"])
    # the most Cyclist per box first (s2's Cyclist is not its top label); a crowded frame's two Cyclists only then
    assert frames(sel) == ["s0", "s1", "s3", "s2", "c0"]
    assert sel["chosen_by_signal"]["target"] == 5 and all(c["drivers"] == ["target"] for c in sel["frames"])
    assert sel["frames"][0]["reason"].startswith("target 0.96 per box (1 predicted): Cyclist 0.96 expected boxes")
    assert sel["boxes"]["chosen"] == 12 and sel["frames"][0]["expected"] == {"Cyclist": round(0.9 / 0.94, 4)}
    # per class: the chosen frames' expected boxes (normalised class vectors summed) against 12 random boxes' share
    exp = {f: (np.array(vs) / np.array(vs).sum(axis=1, keepdims=True)).sum(axis=0) for f, vs in pool_vectors().items()}
    chosen, pool_total = sum(exp[f] for f in frames(sel)), sum(exp.values())
    pool_boxes = 4 * 8 + 4 + 4
    for k, c in enumerate(CLASSES):
        want = {"chosen": round(chosen[k], 2), "random": round(pool_total[k] * 12 / pool_boxes, 2),
                "pool": round(pool_total[k], 2), "ratio": round(chosen[k] / (pool_total[k] * 12 / pool_boxes), 3)}
        assert sel["by_class"][c] == pytest.approx(want, abs=1e-3), c
    assert sel["by_class"]["Cyclist"]["ratio"] > 1.5 > 1 > sel["by_class"]["Car"]["ratio"]


def test_a_frame_budget_buys_the_frames_with_the_most_target_boxes(pool):
    preds, scores = pool
    sel = select(preds, scores, pool[0].parent / "frames", budget=5, targets=["Cyclist"])
    assert set(frames(sel)[:4]) == {"c0", "c1", "c2", "c3"} and frames(sel)[4] == "s0"  # 2 Cyclists a frame, then 0.96


def test_a_share_mixes_target_and_signal_picks_and_the_box_budget_holds(pool):
    preds, scores = pool
    sel = select(preds, scores, pool[0].parent / "share", budget_boxes=13, targets=["Cyclist=0.5"])
    assert frames(sel)[0] == "s0" and sel["frames"][1]["drivers"] != ["target"]  # share met: the signals pick next
    assert 0 < sel["chosen_by_signal"]["target"] < len(sel["frames"])
    assert sum(c["boxes"] for c in sel["frames"]) <= 13
    # 8 + 1 + ... a crowded frame that no longer fits is passed over for one that does
    tight = select(preds, scores, pool[0].parent / "tight", budget_boxes=10)
    assert [c["boxes"] for c in tight["frames"]][0] == 8 and sum(c["boxes"] for c in tight["frames"]) <= 10
    assert len(tight["frames"]) >= 2


def test_both_budgets_hold_together(pool):
    preds, scores = pool
    sel = select(preds, scores, pool[0].parent / "both", budget=2, budget_boxes=40, targets=["Cyclist"])
    assert frames(sel) == ["s0", "s1"]


def test_the_report_shows_chosen_boxes_per_class_against_random(pool, tmp_path):
    preds, scores = pool
    select(preds, scores, tmp_path / "sel", budget_boxes=4, targets=["Cyclist"])
    summary = report(preds, scores, tmp_path / "sel", tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "report.html").read_text()
    cyc = summary["by_class"]["Cyclist"]
    assert f"| Cyclist | {cyc['chosen']:.1f} | {cyc['random']:.1f} | {cyc['ratio']:.2f}x |" in md
    assert "| target | first | 4 |" in md and "Budget: 4 boxes; targets Cyclist (share 1)." in md
    assert "Boxes per class: chosen vs a random pick" in html and f"<td>Cyclist</td><td>{cyc['chosen']:.1f}</td>" in html
    assert "Each predicted box split among the classes by the head's class scores, normalised." in md  # no probe here


# ---------------------------------------------------------------- bad input: exit 2, naming the value


@pytest.mark.parametrize("kwargs, message", [
    (dict(budget_boxes=4, targets=["Truck"]), "target class 'Truck' is not a class of the dataset definition kitti-3class; "
                                              "expected one of Car, Pedestrian, Cyclist"),
    (dict(budget_boxes=4, targets=["Cyclist=0"]), "the share 0 is outside (0, 1]"),
    (dict(budget_boxes=4, targets=["Cyclist=1.5"]), "the share 1.5 is outside (0, 1]"),
    (dict(budget_boxes=4, targets=["Cyclist=-0.2"]), "the share -0.2 is outside (0, 1]"),
    (dict(budget_boxes=4, targets=["Cyclist=lots"]), "target 'Cyclist=lots': expected CLASS or CLASS=SHARE"),
    (dict(budget_boxes=4, targets=["Cyclist", "Cyclist=0.5"]), "target class 'Cyclist' is named twice"),
    (dict(budget_boxes=0), "budget in boxes must be a whole number of boxes >= 1, got 0"),
    (dict(), "no budget"),
])
def test_bad_targets_and_budgets_are_usage_errors(pool, kwargs, message, tmp_path):
    with pytest.raises(UsageError) as err:
        select(*pool, tmp_path / "sel", **kwargs)
    assert err.value.exit_code == 2 and message in str(err.value), str(err.value)
    assert not (tmp_path / "sel").exists()


def test_a_box_budget_below_every_frames_boxes_is_a_usage_error(tmp_path):
    preds, scores = write_pool(tmp_path / "p", pool_vectors(crowded_frames=3, sparse=False))
    with pytest.raises(UsageError, match=r"budget of 7 boxes is smaller than any pool frame's predicted boxes \(the "
                                         r"fewest: 8, frame c0\)"):
        select(preds, scores, tmp_path / "sel", budget_boxes=7)
    assert len(select(preds, scores, tmp_path / "sel", budget_boxes=8)["frames"]) == 1


def test_cli_exits_2_naming_the_value(pool, tmp_path, capsys):
    preds, scores = pool
    base = ["iterate", "select", str(preds), str(scores), str(tmp_path / "sel")]
    assert main(base + ["--budget-boxes", "4", "--target-class", "Tram"]) == 2
    assert "target class 'Tram' is not a class of the dataset definition" in capsys.readouterr().err
    assert main(base + ["--budget-boxes", "4", "--target-class", "Cyclist=2"]) == 2
    assert "the share 2 is outside (0, 1]" in capsys.readouterr().err
    assert main(base) == 2 and "no budget" in capsys.readouterr().err
    assert main(base + ["--budget-boxes", "2", "--target-class", "Cyclist=0.5", "--target-class", "Pedestrian"]) == 0
    sel = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert sel["targets"] == {"Cyclist": 0.5, "Pedestrian": 1.0} and sel["budget_boxes"] == 2


@pytest.mark.parametrize("pipeline,param,named", [
    ("collect", "select_target_classes=Cyclist=2", "the share 2 is outside (0, 1]"),
    ("collect", "select_weights=novelty=-1", "weight 'novelty=-1': expected SIGNAL=WEIGHT"),
    ("iterate", "select_weights=novelty", "weight 'novelty': expected SIGNAL=WEIGHT"),
    ("iterate", "select_weights=novelty=2,novelty=3", "signal 'novelty' is weighed twice"),
    ("iterate", "budget=0", "give a budget in frames or boxes")])
def test_a_pipeline_run_refuses_bad_selection_settings_before_any_step(pipeline, param, named, tmp_path, capsys):
    """``admlops run iterate|collect --local``: bad selection settings exit 2 naming the value before any step ran
    (not as a failed select step after inference)."""
    given = {"collect": ["recordings=drive", "model=det@production", "dataset=d@v1", "budget=3"],
             "iterate": ["model=det@production", "pool=pool", "dataset=d@v1", "budget=3"]}[pipeline]
    params = [p for p in given if p.split("=")[0] != param.split("=")[0]] + [param]
    args = ["run", pipeline, "--local", "--store", str(tmp_path / "store")] + [x for p in params for x in ("--param", p)]
    assert main(args) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "store" / "runs").exists()


# ---------------------------------------------------------------- the benchmark's generator setting


def test_synth_class_weights_change_the_mix_and_the_defaults_stay(tmp_path):
    from admlops.components.synth.kitti import render_frame, synth_kitti

    _, default, _, _ = render_frame(3, 1)
    _, same, _, _ = render_frame(3, 1, class_probs={})
    assert default == same
    _, only, _, _ = render_frame(3, 1, class_probs={"Car": 0, "Pedestrian": 0, "Cyclist": 1, "Van": 0, "Truck": 0})
    assert {o.type for o in only} <= {"Cyclist", "DontCare"} and any(o.type == "Cyclist" for o in only)
    with pytest.raises(ValueError, match="unknown class 'Bus'"):
        synth_kitti(tmp_path / "x", 1, class_probs={"Bus": 1.0})
