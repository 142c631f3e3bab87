"""3D export through the product's one export command: PointPillars (configs/models/pointpillars_kitti_cpu.py) on an
mmdet3d KITTI data root, exported with mmdeploy's VoxelDetection task; the graph against PyTorch on the same
voxels (and a perturbed model as the control); the KITTI parity gate; the benchmark's three stages; bad input
named by file."""
import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from admlops.errors import InputError, StepFailed, UsageError

STAGES = ["voxelization", "network", "post_processing"]
# The graph against PyTorch on the same voxels (measured: ~1e-5 on cls_score maps of magnitude ~5, ~1e-7 on box
# and direction maps); a 1 % perturbation of one backbone convolution moves them by > 1e-2.
ATOL, RTOL = 2e-4, 1e-4


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """12 synthetic frames, every second one val."""
    from admlops.components.infos.kitti import write_kitti_infos
    from admlops.components.synth.kitti import synth_kitti

    tmp = tmp_path_factory.mktemp("export3d")
    kitti = synth_kitti(tmp / "kitti", frames=12, seed=3, val_fraction=0.5, workers=2)
    write_kitti_infos(kitti, tmp / "root", workers=2)
    return tmp / "root"


@pytest.fixture(scope="module")
def model_dir(data_root, tmp_path_factory) -> Path:
    """PointPillars trained 2 iterations by the train step (no validation run: the export evaluates it). A score
    threshold of 0.001 keeps up to 50 boxes per scan from the barely trained head, so there are detections to
    compare (its initial scores are ~0.01, under the config's 0.05)."""
    from admlops.components.train.train import train

    out = tmp_path_factory.mktemp("model3d") / "model"
    train(data_root, out, config="pointpillars_kitti_cpu", max_iters=2, batch_size=2,
          cfg_options={"train_cfg.val_interval": 1000, "model.test_cfg.score_thr": 0.001})
    return out


@pytest.fixture(scope="module")
def exported(data_root, model_dir, tmp_path_factory) -> Path:
    from admlops.components.export.export import export

    out = tmp_path_factory.mktemp("exp3d") / "export"
    # every 3D default (deploy config, targets, allowances; PyTorch evaluated here) but the gates' floor: a 2-iteration
    # model is below the AP floor, and the export's mechanics are under test here (the floor: test_the_floor_*)
    export(data_root, model_dir, out, gate_floor=0.0)
    return out


def _configs(export_dir: Path, data_root: Path):
    from mmengine.config import Config

    from admlops.mmconfig import use_dataset

    cfg = Config.fromfile(str(export_dir / "model.py"))
    use_dataset(cfg, data_root)
    return cfg


def _voxels_and_maps(exported, data_root, model_dir, scans=2):
    """For ``scans`` val scans: the model's voxels, PyTorch's head maps, ONNX Runtime's (the exported target) and the
    PyTorch model (to perturb)."""
    from mmdet3d.apis import init_model

    from admlops import compat
    from admlops.backends import get_backend
    from admlops.tasks import voxel_detection as export3d

    compat.apply()
    cfg = _configs(exported, data_root)
    model = init_model(cfg, str(model_dir / "model.pth"), device="cpu")
    points, samples = export3d.load_scans(cfg, export3d.split_scans(cfg, data_root, max_scans=scans))
    voxelize = export3d.voxelizer(model.data_preprocessor)
    voxels = [voxelize(p, s) for p, s in zip(points, samples, strict=True)]
    ort = export3d.runner_network(get_backend("onnxruntime").load(exported / "onnxruntime-fp32"))
    return model, samples, voxels, [export3d.torch_network(model)(v) for v in voxels], [ort(v) for v in voxels]


def test_export_writes_a_voxel_graph_whose_outputs_match_pytorch(exported, data_root, model_dir):
    """end2end.onnx takes voxels/num_points/coors and outputs the head's maps, equal to PyTorch's on the same voxels
    within ATOL/RTOL; a 1 % perturbation of one backbone weight breaks that tolerance (the control); decoding both
    with the head's predict_by_feat gives the same boxes."""
    import torch

    from admlops.backends.base import onnx_io
    from admlops.tasks.voxel_detection import OUTPUTS, decoder, torch_network

    assert onnx_io(exported / "end2end.onnx") == (["voxels", "num_points", "coors"], list(OUTPUTS))
    assert "type='mmdet3d'" in (exported / "deploy.py").read_text().replace('"', "'")
    model, samples, voxels, ours, theirs = _voxels_and_maps(exported, data_root, model_dir)
    assert len({len(v["voxels"]) for v in voxels}) == 2  # two scans, two pillar counts: the voxel axis is dynamic
    for ref, got in zip(ours, theirs, strict=True):
        assert set(got) == set(OUTPUTS)
        for name in OUTPUTS:
            assert got[name].shape == tuple(ref[name].shape)
            np.testing.assert_allclose(got[name], ref[name].numpy(), atol=ATOL, rtol=RTOL, err_msg=name)

    decode = decoder(model.bbox_head, model.test_cfg)
    for ref, got, sample in zip(ours, theirs, samples, strict=True):
        a, b = decode(ref, sample), decode(got, sample)
        assert len(a.scores_3d) > 0 and torch.equal(a.labels_3d, b.labels_3d)
        np.testing.assert_allclose(b.bboxes_3d.tensor.numpy(), a.bboxes_3d.tensor.numpy(), atol=1e-3)
        np.testing.assert_allclose(b.scores_3d.numpy(), a.scores_3d.numpy(), atol=1e-4)

    perturbed = copy.deepcopy(model)
    weight = perturbed.backbone.blocks[0][0].weight
    with torch.no_grad():
        weight += 0.01 * weight.abs().mean() * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    moved = torch_network(perturbed)(voxels[0])
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(theirs[0]["cls_score0"], moved["cls_score0"].numpy(), atol=ATOL, rtol=RTOL)


def test_onnx_runtime_kitti_metrics_equal_pytorch_within_the_gate(exported):
    """Export evaluated PyTorch and the ONNX Runtime targets (fp32 and int8, the 3D defaults) with the same
    KittiMetric on the same val split and gated the class mean of 3D AP40 moderate (strict IoU) at the default 1.0
    point (fp32) and 1.5 (int8); every KITTI number of fp32 agrees."""
    metrics = json.loads((exported / "metrics.json").read_text())
    gates = json.loads((exported / "gates.json").read_text())
    assert gates["metric"] == metrics["gated_metric"] == "mAP_3D_AP40_moderate" and gates["passed"]
    g, g8 = gates["gates"]
    assert (g["backend"], g["precision"], g["allowed_points"]) == ("onnxruntime", "fp32", 1.0)
    assert (g8["backend"], g8["precision"], g8["allowed_points"]) == ("onnxruntime", "int8", 1.5)
    assert g8["measured"] == metrics["backends"]["onnxruntime-int8"]["headline"]["mAP_3D_AP40_moderate"]
    pytorch, onnx = metrics["pytorch"], metrics["backends"]["onnxruntime-fp32"]
    assert g["pytorch"] == pytorch["headline"]["mAP_3D_AP40_moderate"]
    assert g["measured"] == onnx["headline"]["mAP_3D_AP40_moderate"] and metrics["onnxruntime"] == onnx
    assert abs(g["drop_points"]) <= 1.0 and metrics["difference"] == pytest.approx(-g["drop_points"])
    assert set(pytorch["per_class"]) == set(onnx["per_class"]) == {"Pedestrian", "Cyclist", "Car"}
    # the barely trained model's 50 boxes a scan hit some Cars (measured: Car BEV AP11 moderate loose ~9): numbers
    # that a different decoding or ranking of ONNX Runtime's boxes would move
    assert any(ap > 0 for aps in pytorch["per_class"].values() for ap in aps.values()), pytorch["per_class"]
    for cls, aps in pytorch["per_class"].items():
        assert len(aps) == 36
        for key, ap in aps.items():
            assert abs(onnx["per_class"][cls][key] - ap) <= 1.0, (cls, key)


def test_int8_quantizes_the_convolutions_calibrated_on_train_scans(exported, data_root, model_dir, tmp_path):
    """onnxruntime:int8 of the voxel graph: every convolution of the pillar backbone and neck reads QDQ int8
    weights and uint8 activations (the head writing the graph outputs stays float), calibrated on the train
    split's voxelized scans (all 6: fewer than 32); its maps follow fp32's (correlation > 0.95 on every map,
    measured >= 0.997) while the same build calibrated on voxels scaled by 0.01 (wrong activation ranges) does not
    (measured 0.77-0.92: the control)."""
    import onnx

    from admlops.backends import get_backend
    from admlops.backends.base import Calibration
    from admlops.tasks import get_task
    from admlops.tasks.voxel_detection import OUTPUTS, runner_network
    from admlops.mmconfig import kitti_infos

    build = json.loads((exported / "onnxruntime-int8" / "build.json").read_text())
    calibration = build["calibration"]
    assert calibration["source"] == str(kitti_infos(data_root.resolve(), "train")) and calibration["batches"] == 6
    assert set(calibration["shape"]) == {"voxels", "num_points", "coors"}
    assert build["quantization"]["activations"] == "uint8"
    graph = onnx.load(str(exported / "onnxruntime-int8" / "model.onnx")).graph
    dequantized = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    outputs = {o.name for o in graph.output}
    head = [n for n in graph.node if n.op_type == "Conv" and set(n.output) & outputs]
    convs = [n for n in graph.node if n.op_type == "Conv" and n not in head]
    assert len(convs) >= 10 and all(n.input[0] in dequantized and n.input[1] in dequantized for n in convs)
    # the head's convolutions write the graph's outputs (decoded outside it) and stay float: quantized, they cost
    # the demo model 5.4 points of 3D AP40 moderate, float 0.1
    assert sorted(n.output[0] for n in head) == sorted(OUTPUTS)
    assert not any(i in dequantized for n in head for i in n.input[:2])
    initializers = {i.name: i for i in graph.initializer}
    zero_point = initializers[dequantized[convs[0].input[0]].input[2]]
    assert zero_point.data_type == onnx.TensorProto.UINT8

    model, samples, voxels, _, fp32 = _voxels_and_maps(exported, data_root, model_dir)
    int8 = [runner_network(get_backend("onnxruntime").load(exported / "onnxruntime-int8"))(v) for v in voxels]

    def correlations(maps):
        return [float(np.corrcoef(m[name].ravel(), f[name].ravel())[0, 1]) for m, f in zip(maps, fp32) for name in OUTPUTS]

    assert min(correlations(int8)) > 0.95, correlations(int8)
    good = get_task("voxel-detection").calibration_set(data_root, _configs(exported, data_root), None, 32)
    scaled = Calibration(good.source, [{**b, "voxels": b["voxels"] * 0.01} for b in good.batches], good.images)
    get_backend("onnxruntime").build(exported / "end2end.onnx", tmp_path / "scaled", "int8", scaled)
    wrong = [runner_network(get_backend("onnxruntime").load(tmp_path / "scaled"))(v) for v in voxels]
    assert min(correlations(wrong)) < 0.95, correlations(wrong)  # fails the criterion the calibrated build meets


def test_qat_of_the_voxel_detector_exports_a_qdq_graph_that_onnx_runtime_runs_as_trained(data_root, model_dir, tmp_path):
    """Quantization-aware training of PointPillars: the backbone's and neck's convolutions fake-quantized, the head's
    kept float (as post-training int8 keeps them), their ranges calibrated on the voxelized train scans, fine-tuned
    one iteration; the export's graph carries the Q/DQ pairs, onnxruntime:int8 takes it as it is (no calibration of
    its own) and computes what the quantized PyTorch model computes, which the float network does not (the
    control: the same weights with the quantizers off). Trained for a CPU without VNNI, its weights are 7-bit."""
    import onnx
    import torch
    from mmdet3d.apis import init_model

    from admlops import compat
    from admlops.backends import get_backend
    from admlops.components.export.export import export
    from admlops.components.qat.qat import qat
    from admlops.mmext.quantized import float_convs
    from admlops.tasks import voxel_detection as export3d

    import shutil

    parent = tmp_path / "parent"  # for a fleet without VNNI: 7-bit weights (admlops/mmext/quantized.py)
    shutil.copytree(model_dir, parent)
    (parent / "config.py").write_text((model_dir / "config.py").read_text() + "\nqat = dict(int8_cpu='avx2')\n")
    record = qat(parent, data_root, tmp_path / "qat", iters=1, batch_size=2)
    assert record["keep_float"] == ["bbox_head"] and record["quantized"] >= 10 and record["weight_bits"] == 7
    assert record["act_amax"] and not any(name.startswith("bbox_head") for name in record["act_amax"])
    assert record["calibration"]["images"] == 6  # every train scan: fewer than the 32 asked for
    export(data_root, tmp_path / "qat", tmp_path / "export", targets="onnxruntime:int8", gate_floor=0.0)
    build = json.loads((tmp_path / "export" / "onnxruntime-int8" / "build.json").read_text())
    assert build["calibration"] is None and build["quantization"]["q_nodes"] == 2 * record["quantized"]
    assert build["quantization"]["weight_bits"] == 7  # rebuilt from config.py in export: the setting travelled
    graph = onnx.load(str(tmp_path / "export" / "end2end.onnx")).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) == 2 * record["quantized"]  # input and weight each

    compat.apply()
    cfg = _configs(tmp_path / "export", data_root)
    model = init_model(cfg, str(tmp_path / "qat" / "model.pth"), device="cpu")
    points, samples = export3d.load_scans(cfg, export3d.split_scans(cfg, data_root, max_scans=2))
    voxelize = export3d.voxelizer(model.data_preprocessor)
    voxels = [voxelize(p, s) for p, s in zip(points, samples, strict=True)]
    ort = export3d.runner_network(get_backend("onnxruntime").load(tmp_path / "export" / "onnxruntime-int8"))
    network = export3d.torch_network(model)
    for v in voxels:  # one activation level flipped by float rounding moves a map value by ~1e-3: mean and p99
        got, want = ort(v), network(v)
        with float_convs():
            plain = network(v)
        for name in export3d.OUTPUTS:
            err = np.abs(got[name] - want[name].numpy())  # measured: mean 3e-5, p99 1.7e-4
            assert err.mean() < 1e-4 and np.percentile(err, 99) < 1e-3, (name, err.mean(), np.percentile(err, 99))
            moved = np.abs(plain[name].numpy() - want[name].numpy())  # the control: mean 6e-4, p99 4e-3
            assert moved.mean() > 1e-4 and np.percentile(moved, 99) > 1e-3, name


def test_the_floor_refuses_gates_of_a_model_that_learned_too_little(exported, data_root, model_dir, tmp_path):
    """With the 3D default floor (class-mean 3D AP40 moderate 1.0) the barely trained model's gates are not
    meaningful: an enforcing export fails (exit 4) naming the metric and the floor and publishes nothing; the
    fixture's export (floor 0) recorded the floor it was held to."""
    from admlops.components.export.export import export

    metrics = json.loads((exported / "metrics.json").read_text())
    gates = json.loads((exported / "gates.json").read_text())
    assert gates["floor"]["value"] == 0.0 and gates["floor"]["met"]
    assert metrics["pytorch"]["headline"]["mAP_3D_AP40_moderate"] < 1.0
    with pytest.raises(StepFailed) as err:
        export(data_root, model_dir, tmp_path / "out", pytorch_metrics=metrics["pytorch"], targets="onnxruntime:fp32")
    assert err.value.exit_code == 4
    assert "parity gates not meaningful: PyTorch KITTI 3D AP40 moderate (class mean, strict IoU)" in str(err.value)
    assert "below the floor 1.0000" in str(err.value) and list(tmp_path.iterdir()) == []


def test_gate_fails_when_the_reference_is_pushed_up(exported, data_root, model_dir, tmp_path):
    """PyTorch's gated AP pushed 1.5 points above the measured one: StepFailed (exit 4) naming the target, the metric
    and the allowance, and nothing published; 0.5 points above stays within the gate."""
    from admlops.backends.parity import allowances, gate
    from admlops.tasks.voxel_detection import KITTI_3D_AP40_MODERATE
    from admlops.components.export.export import export

    metrics = json.loads((exported / "metrics.json").read_text())
    pushed = copy.deepcopy(metrics["pytorch"])
    measured = metrics["backends"]["onnxruntime-fp32"]
    allowed = allowances(1.0)
    for up, passes in ((0.5, True), (1.5, False)):
        pushed["headline"]["mAP_3D_AP40_moderate"] = measured["headline"]["mAP_3D_AP40_moderate"] + up
        assert gate("onnxruntime", "fp32", measured, pushed, allowed, KITTI_3D_AP40_MODERATE).passed is passes
    with pytest.raises(StepFailed) as err:
        export(data_root, model_dir, tmp_path / "out", pytorch_metrics=pushed)
    assert err.value.exit_code == 4
    assert "onnxruntime fp32: KITTI 3D AP40 moderate" in str(err.value)
    assert "drop +1.50 points, allowed 1.00: FAILED" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no output, no partial directory


def test_benchmark_times_voxelization_network_and_post_processing(exported, data_root, model_dir, tmp_path):
    from admlops.components.benchmark.benchmark import sweep

    report = sweep(data_root, exported, model_dir, tmp_path / "bench", backends=None, threads=[1], warmup=1,
                   max_images=2)  # backends and batch sizes: a 3D export's defaults (onnxruntime fp32 and int8, batch 1)
    assert report["task"] == "voxel-detection" and report["batch_sizes"] == [1] and report["images"] == 2
    rows = {(r["runtime"], r["precision"]): r for r in report["rows"]}
    assert set(rows) == {("pytorch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    for row in rows.values():
        assert list(row["stages"]) == STAGES and row["calls"] == 2
        for stats in row["stages"].values():
            assert set(stats) == {"mean_ms", "p50_ms", "p90_ms"} and 0 < stats["p50_ms"] <= stats["p90_ms"]
        parts = sum(s["mean_ms"] for s in row["stages"].values())
        assert 0.9 * row["latency"]["mean_ms"] <= parts <= row["latency"]["mean_ms"]  # the call is the three stages
    assert rows["pytorch", "fp32"]["boxes"] == rows["onnxruntime", "fp32"]["boxes"] > 0  # same scans, same decoding
    html = (tmp_path / "bench" / "report.html").read_text()
    md = (tmp_path / "bench" / "benchmark.md").read_text()
    for text in (html, md):
        assert "Stages (per call)" in text and "voxelization p50 (ms)" in text and "post-processing p90 (ms)" in text
    with pytest.raises(UsageError, match="one scan per call"):
        sweep(data_root, exported, model_dir, tmp_path / "b4", backends=["onnxruntime:fp32"], batch_sizes=[4])
    assert not (tmp_path / "b4").exists()


def test_a_pruned_pointpillars_exports_gates_and_benchmarks_like_any_model(data_root, model_dir, tmp_path):
    """The trained model pruned by 30% of its 2D part's MACs (not fine-tuned) from its published directory: export
    writes its voxel graph (head maps equal to the pruned PyTorch model's on a val scan) and records its gate, and
    the benchmark times it beside PyTorch with the same boxes."""
    import json

    from admlops.components.benchmark.benchmark import sweep
    from admlops.components.export.export import export
    from admlops.components.prune.prune import prune

    pruned = tmp_path / "pruned"
    record = prune(model_dir, data_root, pruned, 0.3, finetune_iters=0)
    assert record["macs"][-1] <= 0.7 * record["macs"][0]
    export(data_root, pruned, tmp_path / "export", targets="onnxruntime:fp32", gate_floor=0.0)
    _, _, _, ours, theirs = _voxels_and_maps(tmp_path / "export", data_root, pruned, scans=1)
    for name, ref in ours[0].items():
        np.testing.assert_allclose(theirs[0][name], ref.numpy(), atol=ATOL, rtol=RTOL, err_msg=name)
    gates = json.loads((tmp_path / "export" / "gates.json").read_text())["gates"]
    assert [(g["backend"], g["precision"]) for g in gates] == [("onnxruntime", "fp32")]
    report = sweep(data_root, tmp_path / "export", pruned, tmp_path / "bench", backends=["onnxruntime:fp32"],
                   threads=[1], warmup=0, max_images=1)
    rows = {(r["runtime"], r["precision"]): r for r in report["rows"]}
    assert set(rows) == {("pytorch", "fp32"), ("onnxruntime", "fp32")}
    assert rows["pytorch", "fp32"]["boxes"] == rows["onnxruntime", "fp32"]["boxes"]


def _model_dir_with(config: str, tmp_path: Path) -> Path:
    from mmengine.config import Config

    from admlops.configs import resolve

    out = tmp_path / f"model-{config}"
    out.mkdir()
    Config.fromfile(str(resolve("models", config))).dump(str(out / "config.py"))
    return out


def test_bad_input_is_named(data_root, model_dir, tmp_path):
    from admlops.components.export.export import export

    two_d = _model_dir_with("rtmdet_tiny_kitti", tmp_path)
    with pytest.raises(InputError, match="KITTI data root, but the config reads CocoDataset") as err:
        export(data_root, two_d, tmp_path / "out")
    assert err.value.path == str(data_root.resolve())
    with pytest.raises(InputError, match="for mmdeploy's mmdet codebase, but the model is a 3D voxel detector") as err:
        export(data_root, model_dir, tmp_path / "out", deploy_config="detection_onnxruntime_dynamic")
    assert err.value.path.endswith("configs/deploy/detection_onnxruntime_dynamic.py")
    with pytest.raises(UsageError, match="openvino:fp32 are not available for a 3D voxel detector"):
        export(data_root, model_dir, tmp_path / "out", targets="onnxruntime:fp32,openvino:fp32")
    with pytest.raises(InputError, match="missing: the config reads an mmdet3d KITTI data root") as err:
        export(tmp_path, model_dir, tmp_path / "out")
    assert err.value.path == str(tmp_path.resolve() / "kitti_infos_train.pkl")
    with pytest.raises(UsageError, match="headline/mAP_3D_AP40_moderate"):
        export(data_root, model_dir, tmp_path / "out", pytorch_metrics={"bbox": {"bbox_mAP_50": 0.5}})
    with pytest.raises(InputError, match="missing: export reads train's output") as err:
        export(data_root, tmp_path / "nothing", tmp_path / "out")
    assert err.value.path == str(tmp_path / "nothing" / "config.py")
    assert not (tmp_path / "out").exists()


def test_empty_val_split_is_named(data_root, model_dir, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(data_root, root, symlinks=True)
    val = root / "kitti_infos_val.pkl"
    infos = pickle.loads(val.read_bytes())
    val.write_bytes(pickle.dumps({**infos, "data_list": []}))
    from admlops.components.export.export import export

    with pytest.raises(InputError, match="the val split is empty") as err:
        export(root, model_dir, tmp_path / "out")
    assert err.value.path == str(val) and not (tmp_path / "out").exists()


def test_cli_names_the_data_root_for_a_2d_model(data_root, tmp_path):
    two_d = _model_dir_with("rtmdet_tiny_kitti", tmp_path)
    res = subprocess.run([sys.executable, "-m", "admlops.pipelines.cli", "export", str(data_root), str(two_d),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 3, res.stderr[-3000:]
    assert str(data_root.resolve()) in res.stderr and "CocoDataset" in res.stderr and "Traceback" not in res.stderr
