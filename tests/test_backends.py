"""The deploy-backend interface (admlops.backends): the registry, bad inputs, and the CPU backends (ONNX Runtime,
OpenVINO) on the learned model's exported graph, with the artifacts export built (``learned_onnx``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from admlops.backends import BACKENDS, Calibration, get_backend, parse_targets
from admlops.backends.base import check_calibration, check_environment
from admlops.backends.calibration import spread
from admlops.tasks import get_task
from admlops.errors import InputError, UsageError

SHAPES = {"input": {"min_shape": [1, 3, 192, 640], "opt_shape": [1, 3, 192, 640], "max_shape": [8, 3, 192, 640]}}


def test_every_backend_resolves_by_name_without_its_runtime():
    for name in BACKENDS.names():
        backend = get_backend(name)
        assert backend.name == name and backend.precisions and backend.device in ("cpu", "cuda")
        assert backend.runtime_modules and all(isinstance(m, str) for m in backend.runtime_modules)
    assert get_backend("tensorrt").bound_to == ("tensorrt", "gpu", "compute_capability")


def test_unknown_names_are_usage_errors_naming_the_value():
    with pytest.raises(UsageError, match="unknown deploy backend 'tflite': expected one of onnxruntime, openvino, tensorrt") as err:
        get_backend("tflite")
    assert err.value.exit_code == 2
    with pytest.raises(UsageError, match="backend 'openvino' has no precision 'fp8'"):
        parse_targets("onnxruntime:fp32,openvino:fp8")
    with pytest.raises(UsageError, match="deploy target 'openvino': expected BACKEND:PRECISION"):
        parse_targets("openvino")
    with pytest.raises(UsageError, match="no deploy targets"):
        parse_targets(" ,")
    assert parse_targets("onnxruntime:fp32, openvino:int8,onnxruntime:fp32") == [("onnxruntime", "fp32"), ("openvino", "int8")]


@pytest.mark.parametrize("name", BACKENDS.names())
def test_a_file_that_is_not_an_onnx_model_is_an_input_error_naming_it(tmp_path, name):
    bad = tmp_path / "end2end.onnx"
    bad.write_bytes(b"PK\x03\x04 a zip, not a protobuf" * 10)
    with pytest.raises(InputError) as err:
        get_backend(name).build(bad, tmp_path / "out", "fp32")
    assert err.value.path == str(bad) and "not an ONNX model" in str(err.value)
    with pytest.raises(InputError, match="no such ONNX file"):
        get_backend(name).build(tmp_path / "missing.onnx", tmp_path / "out", "fp32")
    assert not (tmp_path / "out").exists()


def _batches(*shapes, dtype=np.float32):
    return [np.zeros(s, dtype) for s in shapes]


@pytest.mark.parametrize("batches, message", [
    ([], "the calibration set is empty"),
    (_batches((1, 1, 192, 640)), r"calibration batch 0 is float32 \[1, 1, 192, 640\]: expected float32 \[N, 3, H, W\]"),
    (_batches((1, 3, 192, 640), dtype=np.float64), "calibration batch 0 is float64"),
    (_batches((3, 192, 640)), r"calibration batch 0 is float32 \[3, 192, 640\]"),
    (_batches((1, 3, 192, 640), (1, 3, 160, 640)), r"batch 1 has shape \[1, 3, 160, 640\], batch 0 \[1, 3, 192, 640\]"),
    (_batches((1, 3, 384, 640)), r"outside the deploy config's input shapes for 'input': min \[1, 3, 192, 640\]"),
    (_batches((16, 3, 192, 640)), "outside the deploy config's input shapes"),
])
def test_a_calibration_set_that_is_empty_or_of_the_wrong_shape_is_an_input_error(batches, message):
    with pytest.raises(InputError, match=message) as err:
        check_calibration(Calibration("dataset/annotations/train.json", batches), ["input"], SHAPES)
    assert err.value.path == "dataset/annotations/train.json" and err.value.exit_code == 3


VOXEL_INPUTS = ["voxels", "num_points", "coors"]


def _scan(voxels: int = 5) -> dict:
    return {"voxels": np.zeros((voxels, 16, 4), np.float32), "num_points": np.ones(voxels, np.int32),
            "coors": np.zeros((voxels, 4), np.int32)}


@pytest.mark.parametrize("batches, message", [
    ([], "the calibration set is empty"),
    ([np.zeros((1, 3, 8, 8), np.float32)], r"calibration batch 0 is ndarray: the graph takes arrays named \['coors'"),
    ([_scan(), {"voxels": _scan()["voxels"]}], r"calibration batch 1 is arrays \['voxels'\]: the graph takes"),
    ([{**_scan(), "coors": [[0, 0, 0, 0]]}], r"calibration batch 0 is arrays \['coors', 'num_points', 'voxels'\]"),
])
def test_a_calibration_set_of_a_graph_of_several_inputs_names_them(batches, message):
    """The 3D voxel graph calibrates on one dict of its inputs per scan (pillar counts differ from scan to scan)."""
    check_calibration(Calibration("root/kitti_infos_train.pkl", [_scan(5), _scan(9)]), VOXEL_INPUTS, None)
    with pytest.raises(InputError, match=message) as err:
        check_calibration(Calibration("root/kitti_infos_train.pkl", batches), VOXEL_INPUTS, None)
    assert err.value.path == "root/kitti_infos_train.pkl"


def test_int8_without_calibration_fails_before_building(learned_onnx, tmp_path):
    for name in ("onnxruntime", "openvino"):
        with pytest.raises(InputError, match="calibration: the calibration set is empty"):
            get_backend(name).build(learned_onnx / "end2end.onnx", tmp_path / name, "int8", None, SHAPES)
        with pytest.raises(InputError, match="train.json: the calibration set is empty"):
            get_backend(name).build(learned_onnx / "end2end.onnx", tmp_path / name, "int8", Calibration("train.json", []))
    assert not list(tmp_path.iterdir())


def test_calibration_set_of_an_empty_train_split_names_the_file(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(InputError) as err:
        get_task("image-detection").calibration_set(tmp_path, None, None, 8)
    assert err.value.path == str(tmp_path / "annotations" / "train.json") and "no images" in str(err.value)
    with pytest.raises(InputError, match="missing: the dataset has no val split"):
        get_task("image-detection").calibration_set(tmp_path, None, None, 8, split="val")
    with pytest.raises(UsageError, match="at least one input"):
        get_task("image-detection").calibration_set(tmp_path, None, None, 0)


def test_spread_takes_images_evenly_over_the_split():
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread(list(range(4)), 8) == [0, 1, 2, 3]
    assert spread(list(range(160)), 32)[-1] == 155


def test_calibration_key_follows_the_data():
    a = Calibration("t", [np.ones((1, 3, 4, 4), np.float32)])
    assert a.key() == Calibration("other", [np.ones((1, 3, 4, 4), np.float32)]).key()
    assert a.key() != Calibration("t", [np.ones((1, 3, 4, 4), np.float32) * 2]).key()
    scans = Calibration("t", [_scan(5), _scan(9)])
    assert scans.shape() == {"voxels": [5, 16, 4], "num_points": [5], "coors": [5, 4]}
    assert scans.key() == Calibration("t", [_scan(5), _scan(9)]).key() != Calibration("t", [_scan(9), _scan(5)]).key()
    renamed = Calibration("t", [{("points" if k == "voxels" else k): v for k, v in _scan(5).items()}, _scan(9)])
    assert renamed.key() != scans.key()


def test_check_environment_names_every_difference(tmp_path):
    check_environment({"tensorrt": "10.16", "gpu": "H200"}, {"tensorrt": "10.16", "gpu": "H200", "x": 1}, ("tensorrt", "gpu"), tmp_path)
    with pytest.raises(InputError, match=r"tensorrt '10.0' \(here '10.16'\); gpu 'A100' \(here 'H200'\)"):
        check_environment({"tensorrt": "10.0", "gpu": "A100"}, {"tensorrt": "10.16", "gpu": "H200"}, ("tensorrt", "gpu"), tmp_path)


# -- the CPU backends on the learned model ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def val_batch(learned_model, learned_onnx) -> np.ndarray:
    """Four val images as the graph sees them, [4, 3, 192, 640]."""
    from mmengine.config import Config

    from admlops.tasks.image_detection import preprocessor, split_images

    run = preprocessor(Config.fromfile(str(learned_onnx / "model.py")), Config.fromfile(str(learned_onnx / "deploy.py")))
    return np.concatenate([run(Path(learned_model.dataset) / im["file_name"])[0]
                           for im in split_images(learned_model.dataset, "val")[1][:4]])


def _detections(runner, batch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: every detection (boxes with scores) and its label."""
    out = runner(batch)
    return list(zip(out["dets"], out["labels"]))


CONFIDENT, MARGIN, TIE = 0.3, 0.05, 1e-6


def _max_box_error(a, b) -> float:
    """The largest coordinate or score difference between the confident detections (score > 0.3) of ``a`` and
    ``b``, matched one-to-one both ways to the same-class detection of the other side nearest in box and score
    (inf when one has none). What floating point may order either way is not counted: a detection near the cut
    may fall on the other side of it (its partner is looked for down to 0.25), and of two overlapping candidates
    tied in score NMS may keep either — one such tie per image (score within 1e-6, IoU in [0.5, 0.95): another
    candidate, not the same box moved, which counts)."""
    from admlops.geometry import box_iou

    def one_way(ours, theirs) -> float:
        (d, l), (e, m) = ours, theirs
        free = np.ones(len(e), dtype=bool)
        worst, ties = 0.0, 0
        for k in np.argsort(-d[:, 4]):
            if d[k, 4] <= CONFIDENT:
                break
            same = np.flatnonzero((m == l[k]) & free & (e[:, 4] > CONFIDENT - MARGIN))
            if not same.size:
                return float("inf")
            errors = np.abs(e[same] - d[k]).max(axis=1)
            best = same[int(errors.argmin())]
            free[best] = False
            tie = abs(e[best, 4] - d[k, 4]) < TIE and 0.5 <= box_iou(d[k, :4], e[best, :4])[0, 0] < 0.95
            ties += tie
            worst = max(worst, 0.0 if tie and ties == 1 else float(errors.min()))
        return worst

    assert len(a) == len(b)
    return max(max(one_way(x, y), one_way(y, x)) for x, y in zip(a, b))


def test_box_comparison_on_known_pairs():
    """The comparison counts what a bug would change (a box moved, a detection lost or added) and not what floating
    point may order either way (a score across the cut, the other of two tied candidates kept)."""
    a = (np.array([[10, 10, 50, 40, 0.9], [60, 10, 90, 40, 0.31]], dtype=np.float32), np.array([0, 1]))
    moved = (a[0] + np.array([0, 0, 0.05, 0, 0], dtype=np.float32), a[1])
    across_cut = (a[0] * np.array([1, 1, 1, 1, 0.95], dtype=np.float32), a[1])  # 0.31 -> 0.2945
    tied = (np.array([[14, 10, 54, 40, 0.9], [60, 10, 90, 40, 0.31]], dtype=np.float32), a[1])  # IoU 0.82, same score
    nudged = (tied[0] + np.array([0, 0, 0, 0, 1e-4], dtype=np.float32), a[1])  # not a tie: a score 1e-4 apart
    two = (np.array([[10, 10, 50, 40, 0.9], [64, 10, 94, 40, 0.9]], dtype=np.float32), np.array([0, 0]))
    two_tied = (two[0] + np.array([4, 0, 4, 0, 0], dtype=np.float32), two[1])  # both "tied": one tie per image
    assert _max_box_error([a], [a]) == 0.0
    assert abs(_max_box_error([a], [moved]) - 0.05) < 1e-5  # the same box moved: counted, same score or not
    assert _max_box_error([a], [tied]) == 0.0 and _max_box_error([a], [nudged]) >= 4.0
    assert _max_box_error([two], [two_tied]) >= 4.0
    assert abs(_max_box_error([a], [across_cut]) - 0.045) < 1e-3  # compared, not lost: the score gap counts
    assert _max_box_error([a], [(a[0][:1], a[1][:1])]) == float("inf")  # lost
    assert _max_box_error([(a[0][:1], a[1][:1])], [a]) == float("inf")  # added
    assert _max_box_error([a], [(a[0], np.array([0, 2]))]) == float("inf")  # another class


def test_export_built_every_cpu_target_with_its_report(learned_onnx):
    for name, precision in parse_targets(get_task("image-detection").targets):
        build = json.loads((learned_onnx / f"{name}-{precision}" / "build.json").read_text())
        assert build["backend"] == name and build["precision"] == precision and build["device"] == "cpu"
        assert build["onnx"] == "end2end.onnx" and len(build["onnx_sha256"]) == 64
        assert build["inputs"] == ["input"] and build["outputs"] == ["dets", "labels"]
        assert build["artifact_bytes"] == (learned_onnx / f"{name}-{precision}" / build["artifact"]).stat().st_size
        assert build["environment"][name]
        if precision == "int8":
            assert build["calibration"]["batches"] >= 8 and build["calibration"]["shape"] == [1, 3, 192, 640]
            assert build["calibration"]["source"].endswith("annotations/train.json")


def test_cpu_fp32_backends_detect_what_onnxruntime_detects(learned_onnx, val_batch, tmp_path):
    """OpenVINO fp32 (INFERENCE_PRECISION_HINT f32) gives ONNX Runtime's detections on the same graph to 0.01 px;
    the same IR compiled with OpenVINO's bf16 (its default on this CPU) does not: the hint is what makes it fp32."""
    reference = _detections(get_backend("onnxruntime").load(learned_onnx / "onnxruntime-fp32"), val_batch)
    assert sum(int((d[:, 4] > CONFIDENT).sum()) for d, _ in reference) >= 4, "the learned model must detect something"
    openvino = get_backend("openvino")
    assert _max_box_error(_detections(openvino.load(learned_onnx / "openvino-fp32"), val_batch), reference) < 0.01
    if not _cpu_has_bf16():
        pytest.skip("this CPU has no bf16 (AMX or AVX-512 BF16): the bf16 control would run in f32")
    openvino.build(learned_onnx / "end2end.onnx", tmp_path / "bf16", "bf16")
    assert _max_box_error(_detections(openvino.load(tmp_path / "bf16"), val_batch), reference) > 0.01


def _cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def test_openvino_int8_is_quantized(learned_onnx):
    xml = (learned_onnx / "openvino-int8" / "model.xml").read_text()
    assert xml.count('type="FakeQuantize"') > 20 or xml.count('type="FakeConvert"') > 20
    assert 'type="FakeQuantize"' not in (learned_onnx / "openvino-fp32" / "model.xml").read_text()


def test_load_refuses_a_directory_another_backend_built(learned_onnx):
    with pytest.raises(InputError, match="built by backend 'openvino', not 'onnxruntime'"):
        get_backend("onnxruntime").load(learned_onnx / "openvino-fp32")


def test_runners_take_batches_and_threads(learned_onnx, val_batch):
    for tag in ("onnxruntime-fp32", "openvino-int8"):
        name = tag.split("-")[0]
        run = get_backend(name).load(learned_onnx / tag, threads=1)
        one, four = run(val_batch[:1]), run(val_batch)
        assert one["dets"].shape[0] == 1 and four["dets"].shape[0] == 4 and four["dets"].shape[2] == 5
        assert one["labels"].shape == one["dets"].shape[:2]


def test_openvino_compiles_per_input_shape_and_falls_back_to_dynamic(learned_onnx, val_batch, monkeypatch):
    """The runner compiles the IR for the deploy config's opt shape at load and for each new shape on first use, up
    to MAX_STATIC_SHAPES; past it the dynamic-shape compilation runs: every path detects what ONNX Runtime does."""
    from admlops.backends import openvino

    build = json.loads((learned_onnx / "openvino-fp32" / "build.json").read_text())
    assert build["opt_shape"] == [1, 3, 192, 640]
    monkeypatch.setattr(openvino, "MAX_STATIC_SHAPES", 2)
    reference = get_backend("onnxruntime").load(learned_onnx / "onnxruntime-fp32")
    run = get_backend("openvino").load(learned_onnx / "openvino-fp32", threads=1)
    for batch in (val_batch[:1], val_batch, val_batch[:2], val_batch[1:4], val_batch[:1]):  # static, static, 2x dynamic
        assert _max_box_error(_detections(run, batch), _detections(reference, batch)) < 0.01


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """Three convolutions (the last one writes the output), exported by torch: quick to quantize and inspect."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1),
                              torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1), torch.nn.ReLU())
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 16, 16), str(path), input_names=["input"], output_names=["out"],
                      dynamo=False, opset_version=13)
    rng = np.random.default_rng(0)
    return path, Calibration("tiny", [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(4)])


def _int8_weights(backend: str, out_dir) -> list[int]:
    """The largest |value| of every int8 weight tensor of a built artifact."""
    if backend == "onnxruntime":
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(out_dir / "model.onnx")).graph
        arrays = [numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    else:
        import openvino as ov

        model = ov.Core().read_model(str(out_dir / "model.xml"))
        arrays = [op.get_data() for op in model.get_ordered_ops()
                  if op.get_type_name() == "Constant" and op.get_output_element_type(0) == ov.Type.i8]
    return [int(np.abs(a.astype(np.int32)).max()) for a in arrays if a.ndim == 4]


@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_int8_weights_follow_the_cpu_the_model_is_built_for(name, tiny_onnx, tmp_path):
    """Built for CPUs without VNNI (avx2) the weights use 7 bits (|w| <= 64: u8 x s8 pairs fit the 16-bit sum);
    built for VNNI they use the full int8 range; build.json says which and why."""
    onnx_file, calibration = tiny_onnx
    backend = get_backend(name)
    for target, fix in (("avx2", True), ("avx512_vnni", False)):
        built = backend.build(onnx_file, tmp_path / target, "int8", calibration, options={"int8_cpu": target})
        cpu = json.loads((tmp_path / target / "build.json").read_text())["quantization"]["cpu"]
        assert cpu == built.report["quantization"]["cpu"]
        assert cpu["cpu_kernels"] == target and cpu["overflow_fix"] is fix and cpu["chosen_from"] == "deploy config"
        weights = _int8_weights(name, tmp_path / target)
        assert weights and (max(weights) <= 64 if fix else min(weights) == 127), (target, weights)
    with pytest.raises(UsageError, match="unknown int8 CPU kernel class 'neon'"):
        backend.build(onnx_file, tmp_path / "neon", "int8", calibration, options={"int8_cpu": "neon"})


def test_runners_name_their_kernels(tiny_onnx, tmp_path):
    """OpenVINO reports the convolution primitives its CPU plugin chose: int8 ones for int8, float ones for fp32;
    ONNX Runtime names MLAS's U8S8 class for int8."""
    from admlops.cpu import int8_kernels

    onnx_file, calibration = tiny_onnx
    kernels = {}
    for name, precision in (("openvino", "int8"), ("openvino", "fp32"), ("onnxruntime", "int8")):
        out = tmp_path / f"{name}-{precision}"
        get_backend(name).build(onnx_file, out, precision, calibration if precision == "int8" else None)
        runner = get_backend(name).load(out)
        runner(calibration.batches[0])
        kernels[name, precision] = runner.kernels()
    for precision in ("int8", "fp32"):
        counted = dict(item.rsplit(" x ", 1) for item in kernels["openvino", precision].split(", "))
        assert sum(int(n) for n in counted.values()) == 3, counted  # every convolution, once
        assert all(("I8" in p.upper()) is (precision == "int8") for p in counted), counted
    assert kernels["onnxruntime", "int8"].startswith(f"MLAS U8S8 {int8_kernels()} (by CPU flags)")


def _graph_with(tmp_path, *ops: tuple[str, str]):
    """A one-input graph whose nodes are ``ops`` ((domain, op type)) after an Identity: what a backend checks."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Identity", ["x"], ["y0"])]
    nodes += [helper.make_node(op, [f"y{i}"], [f"y{i + 1}"], domain=domain) for i, (domain, op) in enumerate(ops)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(f"y{len(ops)}", TensorProto.FLOAT, [1])])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11), *(
        helper.make_opsetid(d, 1) for d in dict.fromkeys(d for d, _ in ops))]), str(path))
    return path


def test_a_backend_refuses_a_graph_with_ops_it_cannot_run_naming_them(tmp_path):
    """Ops outside ONNX's domains: ONNX Runtime runs mmdeploy's (its custom-op library) but not mmcv's TensorRT-plugin
    ops; OpenVINO and TensorRT (no plugin library loaded) run neither. The refusal names every op, and a build is
    refused before it writes anything; a graph of standard ops passes every backend (the control)."""
    custom = _graph_with(tmp_path, ("mmcv", "MMCVRoiAlign"), ("mmdeploy", "NMSRotated"))
    with pytest.raises(UsageError, match=r"onnxruntime: the graph g.onnx uses mmcv::MMCVRoiAlign, which onnxruntime"):
        get_backend("onnxruntime").check_graph(custom)
    for name in ("openvino", "tensorrt"):
        with pytest.raises(UsageError, match=f"uses mmcv::MMCVRoiAlign, mmdeploy::NMSRotated, which {name} cannot run"):
            get_backend(name).check_graph(custom)
    with pytest.raises(UsageError, match="openvino cannot run"):
        get_backend("openvino").build(custom, tmp_path / "ov", "fp32")
    assert not (tmp_path / "ov").exists()
    (tmp_path / "mmdeploy").mkdir()
    (tmp_path / "standard").mkdir()
    get_backend("onnxruntime").check_graph(_graph_with(tmp_path / "mmdeploy", ("mmdeploy", "NMSRotated")))
    for name in ("onnxruntime", "openvino", "tensorrt"):
        get_backend(name).check_graph(_graph_with(tmp_path / "standard"))
