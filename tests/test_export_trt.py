"""export-trt and the TensorRT backend.

What runs on a CPU is tested here everywhere: the graphs that carry the engines' precision (fp16, and the Q/DQ
int8 graph), run under ONNX Runtime and gated against PyTorch as the engines are; the TensorRT versions taken
(10.x, 11.x) and refused; the per-layer precision report in TensorRT 10's and 11's inspector layouts; the
optimization-profile checks; the Q/DQ graph reuse rule; the refusal of an engine built on another GPU or TensorRT
version; and the bad inputs of export-trt (each fails before TensorRT is touched and publishes nothing). Building
and running engines needs an NVIDIA GPU and the deploy image's tensorrt: those tests skip elsewhere, saying so.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from admlops.backends import Calibration, get_backend
from admlops.backends import tensorrt as trt_backend
from admlops.backends.tensorrt import (GRAPHS, NO_CUDA, QDQ_KEY, check_version, graph_key, layer_precisions,
                                       precision_graph, profile_shapes, reusable_graph)
from admlops.errors import AdmlopsError, InputError, UsageError


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _missing() -> str | None:
    if not _cuda():
        return NO_CUDA
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed: engines are built in the deploy image (images/deploy)"
    return None


needs_gpu = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")

# The engine inspector's JSON at DETAILED verbosity, in the layout TensorRT 10 writes (field names and format
# strings as in NVIDIA's trt-engine-explorer examples): a reformat, an fp16 and an int8 convolution, the NMS layer.
INSPECTOR_JSON = {"Layers": [
    {"Name": "Reformatting CopyNode for Input Tensor 0 to /backbone/stem/stem.0/conv/Conv", "LayerType": "Reformat",
     "Inputs": [{"Name": "input", "Location": "Device", "Dimensions": [1, 3, 192, 640], "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "Reformatted Input Tensor 0", "Location": "Device", "Dimensions": [1, 3, 192, 640],
                  "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
    {"Name": "/backbone/stem/stem.0/conv/Conv", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "/backbone/stem/stem.0/conv/Conv_output_0", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "Weights": {"Type": "Half", "Count": 432}},
    {"Name": "/backbone/stage1/stage1.0/conv/Conv", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "x", "Format/Datatype": "Four wide channel vectorized row major Int8 format"}]},
    {"Name": "/NonMaxSuppression", "LayerType": "NMS",
     "Outputs": [{"Name": "selected", "Format/Datatype": "Row major linear Int32"}]},
    {"Name": "/Cast_3", "LayerType": "Cast", "Outputs": [{"Name": "labels", "Format/Datatype": "Row major linear Int64"}]},
]}
# TensorRT 11 splits the field into a format and a data type
INSPECTOR_JSON_11 = {"Layers": [
    {"Name": "/backbone/stem/stem.0/conv/Conv", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "y", "Format": "Channel major format where channel % 8 == 0", "DataType": "Half"}]},
    {"Name": "/bbox_head/Conv", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "z", "Format": "Row major linear", "DataType": "Int8"}]},
]}


def test_layer_precisions_reads_the_inspector_json():
    report = layer_precisions(INSPECTOR_JSON)
    assert report["count"] == 5
    assert [x["output_type"] for x in report["layers"]] == ["fp16", "fp16", "int8", "int32", "int64"]
    assert report["output_types"] == {"fp16": 2, "int8": 1, "int32": 1, "int64": 1}
    assert report["layers"][3] == {"name": "/NonMaxSuppression", "type": "NMS", "output_type": "int32"}
    # names only (LAYER_NAMES_ONLY verbosity) still reports every layer
    assert layer_precisions({"Layers": ["a", "b"]})["output_types"] == {"unknown": 2}
    assert trt_backend._output_type("Row major linear BFloat16") == "bf16"
    assert trt_backend._output_type("Row major linear FP32") == "fp32"
    assert trt_backend._output_type("Row major linear UInt8") == "uint8"
    assert trt_backend._output_type("Channel major INT8 format") == "int8"
    assert trt_backend._output_type("Row major linear UInt64") == "uint64"
    assert layer_precisions(INSPECTOR_JSON_11)["output_types"] == {"fp16": 1, "int8": 1}


@pytest.mark.parametrize("version, major", [("10.16.1.11", 10), ("11.4.1.2", 11)])
def test_tensorrt_10_and_11_are_taken(version, major):
    assert check_version(version) == major


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0.1", "12.0.0", "nightly"])
def test_another_tensorrt_is_refused_naming_it_and_the_range(version):
    with pytest.raises(UsageError, match=rf"tensorrt {version} is installed; .* TensorRT 10.x to 11.x"):
        check_version(version)


def test_profile_shapes_checks_the_deploy_config():
    shapes = {"input": {"min_shape": [1, 3, 192, 640], "opt_shape": [1, 3, 192, 640], "max_shape": [8, 3, 192, 640]}}
    assert profile_shapes(shapes, "input", [-1, 3, -1, -1]) == ([1, 3, 192, 640], [1, 3, 192, 640], [8, 3, 192, 640])
    with pytest.raises(UsageError, match="no entry for the network input 'images'"):
        profile_shapes(shapes, "images", [-1, 3, -1, -1])
    bad = {"input": dict(shapes["input"], opt_shape=[16, 3, 192, 640])}  # opt above max
    with pytest.raises(UsageError, match=r"min \[1, 3, 192, 640\] <= opt \[16, 3, 192, 640\] <= max"):
        profile_shapes(bad, "input", [-1, 3, -1, -1])
    with pytest.raises(UsageError, match="match the network's static ones"):  # the network has 3 channels, fixed
        profile_shapes({"input": {k: [1, 4, 192, 640] for k in ("min_shape", "opt_shape", "max_shape")}}, "input", [-1, 3, -1, -1])
    with pytest.raises(UsageError, match="rank 4"):
        profile_shapes({"input": {k: [1, 3, 192] for k in ("min_shape", "opt_shape", "max_shape")}}, "input", [-1, 3, -1, -1])
    with pytest.raises(UsageError, match="expected min_shape, opt_shape and max_shape"):
        profile_shapes({"input": {"min_shape": [1, 3, 192, 640]}}, "input", [-1, 3, -1, -1])


def _calibration(seed: int) -> Calibration:
    rng = np.random.default_rng(seed)
    return Calibration("train.json", [rng.standard_normal((1, 3, 8, 8), dtype=np.float32) for _ in range(3)])


def test_a_qdq_graph_is_reused_only_for_the_same_graph_and_data(tmp_path):
    key = graph_key("a" * 64, _calibration(0))
    assert key == graph_key("a" * 64, _calibration(0))
    others = [graph_key("b" * 64, _calibration(0)), graph_key("a" * 64, _calibration(1))]
    assert len({key, *others}) == 3, "another graph or calibration set must invalidate the Q/DQ graph"
    assert reusable_graph(None, key) is None
    assert reusable_graph(tmp_path, key) is None  # nothing there yet
    (tmp_path / GRAPHS["int8"]).write_bytes(b"onnx bytes")
    (tmp_path / QDQ_KEY).write_text(json.dumps({"key": key, "quantization": {}}))
    assert reusable_graph(tmp_path, key) == tmp_path / GRAPHS["int8"]
    for other in others:
        assert reusable_graph(tmp_path, other) is None
    (tmp_path / QDQ_KEY).write_text("{not json")
    assert reusable_graph(tmp_path, key) is None
    (tmp_path / QDQ_KEY).write_text(json.dumps({"key": key}))
    (tmp_path / GRAPHS["int8"]).write_bytes(b"")
    assert reusable_graph(tmp_path, key) is None, "an empty graph is no graph"


@pytest.fixture(scope="module")
def trt_graphs(learned_model, learned_onnx, tmp_path_factory):
    """The fp16 and the Q/DQ int8 graph an engine of ``learned_onnx`` is built from, and the configs to run them."""
    from mmengine.config import Config

    from admlops.backends.calibration import CALIBRATION_IMAGES
    from admlops.mmconfig import use_dataset
    from admlops.tasks import get_task

    model_cfg = Config.fromfile(str(learned_onnx / "model.py"))
    use_dataset(model_cfg, learned_model.dataset)
    deploy_cfg = Config.fromfile(str(learned_onnx / "deploy.py"))
    calibration = get_task("image-detection").calibration_set(learned_model.dataset, model_cfg, deploy_cfg,
                                                              CALIBRATION_IMAGES)
    out = tmp_path_factory.mktemp("trt-graphs")
    graphs = {}
    for precision in ("fp16", "int8"):
        (out / precision).mkdir()
        graphs[precision] = precision_graph(learned_onnx / "end2end.onnx", out / precision, precision, calibration, None)
    return graphs, model_cfg, deploy_cfg, out


def test_the_fp16_graph_computes_the_network_in_fp16_and_nms_in_fp32(trt_graphs):
    import onnx
    from onnx import TensorProto

    path, report = trt_graphs[0]["fp16"]
    assert report["graph"] == GRAPHS["fp16"] and path.name == GRAPHS["fp16"]
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    inits = {t.name: t.data_type for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(inits[n.input[1]] == TensorProto.FLOAT16 for n in convs), "every convolution's weights in fp16"
    assert all(types[n.output[0]] == TensorProto.FLOAT16 for n in convs)
    nms = next(n for n in model.graph.node if n.op_type == "NonMaxSuppression")
    assert types[nms.input[0]] == types[nms.input[1]] == TensorProto.FLOAT, "boxes and scores reach NMS in fp32"
    assert [types[t.name] for t in model.graph.input] == [TensorProto.FLOAT]
    assert types["dets"] == TensorProto.FLOAT


def test_the_qdq_graph_is_symmetric_signed_int8(trt_graphs):
    import onnx
    from onnx import numpy_helper

    path, report = trt_graphs[0]["int8"]
    assert report["qdq_graph"] == "calibrated" and report["quantization"]["activations"] == "int8 symmetric"
    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    quantizers = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert quantizers
    for node in quantizers:  # TensorRT's explicit quantization: int8 with zero points of 0
        zero = inits[node.input[2]]
        assert zero.data_type == onnx.TensorProto.INT8 and not numpy_helper.to_array(zero).any(), node.name
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    nms = next(n for n in graph.node if n.op_type == "NonMaxSuppression")
    assert not set(nms.input) & dequantized


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_the_engine_graphs_pass_their_gates_under_onnxruntime(trt_graphs, learned_model, learned_onnx, precision):
    """The graphs that decide a TensorRT engine's precision, run by ONNX Runtime on the CPU through the same gate as
    every deploy target: within 0.5 mAP@0.5 points of PyTorch for fp16, 1.5 for int8."""
    from admlops.backends.parity import allowances, evaluate_runner, gate
    from admlops.tasks import get_task

    graphs, model_cfg, deploy_cfg, out = trt_graphs
    task = get_task("image-detection")
    import onnxruntime

    # graph optimisations off: ONNX Runtime would fuse the Q/DQ pairs into its own int8 kernels, whose arithmetic
    # depends on the CPU (AVX2, VNNI, AMX); unfused, every machine computes the graph's quantization the same way
    opts = onnxruntime.SessionOptions()
    opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = onnxruntime.InferenceSession(str(graphs[precision][0]), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    def run(batch):
        return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: batch})))

    measured = evaluate_runner(run, learned_onnx / "end2end.onnx", model_cfg, deploy_cfg, out / f"eval-{precision}", task)
    result = gate("tensorrt", precision, measured, learned_model.metrics, allowances(), task.metric)
    assert result.passed, result.describe()


BUILT_ON_A100 = {"tensorrt": "10.16.1.11", "gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0",
                 "cuda_runtime": "13.0", "gpu_memory_mib": 81050}


def _engine_dir(tmp_path, environment: dict):
    out = tmp_path / "tensorrt-fp16"
    out.mkdir()
    (out / "model.engine").write_bytes(b"\x00serialized engine")
    (out / "build.json").write_text(json.dumps({"backend": "tensorrt", "precision": "fp16", "artifact": "model.engine",
                                                "environment": environment}))
    return out


@pytest.mark.parametrize("here, differs", [
    (dict(BUILT_ON_A100, gpu="NVIDIA H200", compute_capability="9.0"), "gpu 'NVIDIA A100-SXM4-80GB' (here 'NVIDIA H200')"),
    (dict(BUILT_ON_A100, tensorrt="10.13.0.35"), "tensorrt '10.16.1.11' (here '10.13.0.35')"),
])
def test_an_engine_from_another_gpu_or_tensorrt_is_refused(tmp_path, monkeypatch, here, differs):
    """load compares the engine's recorded TensorRT/GPU with this machine's before TensorRT deserializes anything."""
    out = _engine_dir(tmp_path, BUILT_ON_A100)
    monkeypatch.setattr(trt_backend.TensorRT, "environment", lambda self: here)
    with pytest.raises(InputError) as err:
        get_backend("tensorrt").load(out)
    assert err.value.exit_code == 3
    assert err.value.path == str(out / "model.engine") and differs in str(err.value) and "Rebuild it" in str(err.value)


def test_an_engine_without_its_build_report_is_refused(tmp_path, monkeypatch):
    out = _engine_dir(tmp_path, BUILT_ON_A100)
    (out / "build.json").unlink()
    monkeypatch.setattr(trt_backend.TensorRT, "environment", lambda self: BUILT_ON_A100)
    with pytest.raises(InputError, match="build.json: missing"):
        get_backend("tensorrt").load(out)


@pytest.mark.skipif(_missing() is None, reason="TensorRT and a GPU are here")
def test_without_tensorrt_or_a_gpu_the_error_says_what_is_missing(tmp_path, learned_onnx):
    with pytest.raises(AdmlopsError, match="tensorrt is not installed here|no CUDA device") as err:
        get_backend("tensorrt").build(learned_onnx / "end2end.onnx", tmp_path / "engine", "fp16")
    assert not isinstance(err.value, InputError)


# -- export-trt's bad inputs (all found before TensorRT is touched) ------------------------------------------

@pytest.fixture()
def fake_export(learned_onnx, tmp_path):
    """A copy of export's output whose end2end.onnx the test may break."""
    out = tmp_path / "export"
    out.mkdir()
    for name in ("end2end.onnx", "deploy.py", "model.py", "metrics.json"):
        shutil.copy(learned_onnx / name, out / name)
    return out


def test_export_trt_refuses_a_file_that_is_not_an_onnx_model_and_publishes_nothing(fake_export, learned_model, tmp_path):
    from admlops.components.export_trt.export_trt import export_trt

    (fake_export / "end2end.onnx").write_bytes(b"\x89PNG\r\n\x1a\n not a model at all")
    out = tmp_path / "engines"
    with pytest.raises(InputError) as err:
        export_trt(learned_model.dataset, fake_export, out, precisions="fp16")
    assert err.value.path == str(fake_export / "end2end.onnx") and "not an ONNX model" in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".engines*")), "a failed build leaves nothing behind"


def test_export_trt_names_what_is_wrong(fake_export, learned_model, tmp_path):
    from admlops.components.export_trt.export_trt import export_trt

    with pytest.raises(UsageError, match="backend 'tensorrt' has no precision 'int4'") as err:
        export_trt(learned_model.dataset, fake_export, tmp_path / "a", precisions="fp16,int4")
    assert err.value.exit_code == 2
    with pytest.raises(UsageError, match="expected some of fp32, fp16, int8"):
        export_trt(learned_model.dataset, fake_export, tmp_path / "b", precisions=" , ")
    (fake_export / "deploy.py").unlink()
    with pytest.raises(InputError, match="deploy.py: missing: export-trt builds from export's output"):
        export_trt(learned_model.dataset, fake_export, tmp_path / "c")
    assert not any((tmp_path / n).exists() for n in "abc")


def _tensorrt_bindings(version: str, parse_errors: tuple[str, ...] = ()):
    """What export-trt touches of the tensorrt bindings up to the ONNX parser, at ``version``, whose parser reports
    ``parse_errors`` on any graph (the real bindings need the deploy image and a GPU: the error paths are tested
    here through the product's own calls)."""
    import types

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class ILogger:
        class Severity:
            ERROR, WARNING = 1, 2

        def __init__(self):
            pass

    class Error:
        def __init__(self, text):
            self.text = text

        def node(self):
            return 3

        def desc(self):
            return self.text

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = len(parse_errors)

        def parse_from_file(self, path):
            return not parse_errors

        def get_error(self, i):
            return Error(parse_errors[i])

    trt.ILogger, trt.IOutputAllocator, trt.OnnxParser = ILogger, ILogger, OnnxParser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.Builder = lambda logger: types.SimpleNamespace(create_network=lambda flags: None)
    return trt


@pytest.fixture()
def bindings(monkeypatch):
    """Installs ``_tensorrt_bindings`` as ``tensorrt`` (and a CUDA device) for one test."""
    import sys

    def install(version: str, parse_errors: tuple[str, ...] = ()):
        monkeypatch.setitem(sys.modules, "tensorrt", _tensorrt_bindings(version, parse_errors))
        monkeypatch.setattr(trt_backend, "cuda_device", lambda: {"gpu": "a GPU", "compute_capability": "9.0"})
        trt_backend._classes.cache_clear()

    yield install
    trt_backend._classes.cache_clear()


def test_export_trt_refuses_an_unsupported_tensorrt_naming_it_and_publishes_nothing(fake_export, learned_model,
                                                                                    tmp_path, bindings):
    from admlops.components.export_trt.export_trt import export_trt

    bindings("12.0.1")
    with pytest.raises(UsageError, match=r"tensorrt 12\.0\.1 is installed; .* TensorRT 10\.x to 11\.x") as err:
        export_trt(learned_model.dataset, fake_export, tmp_path / "engines", precisions="fp16")
    assert err.value.exit_code == 2
    assert not (tmp_path / "engines").exists() and not list(tmp_path.glob(".engines*"))


def test_a_graph_tensorrts_parser_refuses_is_named_and_nothing_is_published(fake_export, learned_model, tmp_path,
                                                                            bindings):
    """The parser's errors (node and description) in an InputError naming export's ONNX file and the precision's
    graph (exit 3); the build directory with that graph is not published. A graph it takes gets past the parser
    (the control: the error is the parser's, not the bindings')."""
    from admlops.components.export_trt.export_trt import export_trt

    bindings("10.16.0", ("QuantizeLinear: zero point must be int8 0",))
    with pytest.raises(InputError) as err:
        export_trt(learned_model.dataset, fake_export, tmp_path / "engines", precisions="fp16")
    assert err.value.exit_code == 3 and err.value.path == str(fake_export / "end2end.onnx")
    assert "refused its fp16 graph (model.fp16.onnx): node 3: QuantizeLinear: zero point must be int8 0" in str(
        err.value)
    assert not (tmp_path / "engines").exists() and not list(tmp_path.glob(".engines*"))
    bindings("11.0.0")
    with pytest.raises(Exception) as past:
        export_trt(learned_model.dataset, fake_export, tmp_path / "engines", precisions="fp16")
    assert "parser refused" not in str(past.value)


# -- on a GPU -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engines(learned_model, learned_onnx, tmp_path_factory):
    from admlops.components.export_trt.export_trt import export_trt

    out = tmp_path_factory.mktemp("trt") / "engines"
    result = export_trt(learned_model.dataset, learned_onnx, out, precisions="fp32,fp16,int8", calibration_images=16)
    return out, result


@needs_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engines_build_with_tensorrt_nms_and_pass_their_gates(engines, precision):
    out, result = engines
    build = json.loads((out / f"tensorrt-{precision}" / "build.json").read_text())
    env = build["environment"]
    assert check_version(env["tensorrt"]) and env["gpu"] and env["compute_capability"] and env["cuda_runtime"]
    assert build["artifact_bytes"] == (out / f"tensorrt-{precision}" / "model.engine").stat().st_size > 0
    engine = build["engine"]
    assert engine["typing"] == "strong" and engine["graph"] == GRAPHS.get(precision, "the exported graph (fp32)")
    assert "NMS" in engine["network_layer_types"], "NonMaxSuppression must become TensorRT's own NMS layer"
    assert not [t for t in engine["network_layer_types"] if "PLUGIN" in t], "no plugin library is needed"
    assert engine["profile"]["input"]["max_shape"][0] >= 4 and engine["timing_cache"]
    types = engine["layers"]["output_types"]
    assert types.get({"fp32": "fp32", "fp16": "fp16", "int8": "int8"}[precision], 0) > 0, types
    gates = json.loads((out / "gates.json").read_text())
    assert gates["passed"], gates
    assert result["backends"][f"tensorrt-{precision}"]["bbox"]["bbox_mAP_50"] > 0.3


@needs_gpu
def test_a_rebuild_reuses_the_qdq_graph_and_the_timing_cache(engines, learned_model, learned_onnx, tmp_path):
    """Rebuilding into a published output reuses its Q/DQ graph and timing cache; other calibration images
    calibrate a new graph."""
    from admlops.components.export_trt.export_trt import export_trt

    out = tmp_path / "engines"
    shutil.copytree(engines[0], out)
    assert json.loads((out / "tensorrt-int8" / "build.json").read_text())["engine"]["qdq_graph"] == "calibrated"
    export_trt(learned_model.dataset, learned_onnx, out, precisions="int8", calibration_images=16)
    engine = json.loads((out / "tensorrt-int8" / "build.json").read_text())["engine"]
    assert engine["qdq_graph"] == "reused" and engine["timing_cache"] == "reused"
    assert (out / "tensorrt-int8" / GRAPHS["int8"]).stat().st_size > 0
    export_trt(learned_model.dataset, learned_onnx, out, precisions="int8", calibration_images=12)
    assert json.loads((out / "tensorrt-int8" / "build.json").read_text())["engine"]["qdq_graph"] == "calibrated"


@needs_gpu
def test_engine_runs_by_tensor_name_and_matches_onnxruntime(engines, learned_model, learned_onnx):
    """The fp32 engine's detections on real val images are ONNX Runtime's on the same graph, batch 1 and 4."""
    from mmengine.config import Config

    from admlops.tasks.image_detection import preprocessor, split_images
    from conftest import box_iou

    out, _ = engines
    run = preprocessor(Config.fromfile(str(learned_onnx / "model.py")), Config.fromfile(str(learned_onnx / "deploy.py")))
    images = np.concatenate([run(Path(learned_model.dataset) / im["file_name"])[0]
                             for im in split_images(learned_model.dataset, "val")[1][:4]])
    trt_run = get_backend("tensorrt").load(out / "tensorrt-fp32")
    ort_run = get_backend("onnxruntime").load(learned_onnx / "onnxruntime-fp32")
    for batch in (images[:1], images):
        a, b = trt_run(batch), ort_run(batch)
        assert a["dets"].shape == b["dets"].shape and a["dets"].shape[1] > 0
        for i in range(len(batch)):
            assert (np.diag(box_iou(a["dets"][i, :, :4], b["dets"][i, :, :4])) > 0.99).all()
            np.testing.assert_allclose(a["dets"][i, :, 4], b["dets"][i, :, 4], atol=1e-3)
            assert (a["labels"][i] == b["labels"][i]).all()
