"""export-trt and the TensorRT backend.

What runs on a CPU is tested here everywhere: the per-layer precision report, the optimization-profile checks,
the calibration-cache reuse rule, the refusal of an engine built on another GPU or TensorRT version, and the
bad inputs of export-trt (each fails before TensorRT is touched and publishes nothing). Building and running
engines needs an NVIDIA GPU and the deploy image's tensorrt: those tests skip elsewhere, saying so.
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
from admlops.backends.tensorrt import (CALIBRATION_CACHE, CALIBRATION_KEY, NO_CUDA, calibration_key, layer_precisions,
                                       profile_shapes, reusable_calibration_cache, write_calibration_cache)
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


def test_calibration_cache_is_reused_only_for_the_same_tensorrt_graph_and_data(tmp_path):
    key = calibration_key("10.16.1.11", "a" * 64, _calibration(0))
    assert key == calibration_key("10.16.1.11", "a" * 64, _calibration(0))
    others = [calibration_key("10.15.0.0", "a" * 64, _calibration(0)), calibration_key("10.16.1.11", "b" * 64, _calibration(0)),
              calibration_key("10.16.1.11", "a" * 64, _calibration(1))]
    assert len({key, *others}) == 4, "a new TensorRT, graph or calibration set must invalidate the cache"

    assert reusable_calibration_cache(None, key) is None
    assert reusable_calibration_cache(tmp_path, key) is None  # nothing there yet
    write_calibration_cache(tmp_path, key, b"TRT-1016-EntropyCalibration2\ninput: 3c010a14\n")
    assert reusable_calibration_cache(tmp_path, key) == b"TRT-1016-EntropyCalibration2\ninput: 3c010a14\n"
    for other in others:
        assert reusable_calibration_cache(tmp_path, other) is None
    (tmp_path / CALIBRATION_KEY).write_text("{not json")
    assert reusable_calibration_cache(tmp_path, key) is None
    write_calibration_cache(tmp_path, key, b"")
    assert reusable_calibration_cache(tmp_path, key) is None, "an empty cache is no cache"
    (tmp_path / CALIBRATION_CACHE).unlink()
    assert reusable_calibration_cache(tmp_path, key) is None


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
    assert env["tensorrt"].startswith("10.") and env["gpu"] and env["compute_capability"] and env["cuda_runtime"]
    assert build["artifact_bytes"] == (out / f"tensorrt-{precision}" / "model.engine").stat().st_size > 0
    engine = build["engine"]
    assert "NMS" in engine["network_layer_types"], "NonMaxSuppression must become TensorRT's own NMS layer"
    assert not [t for t in engine["network_layer_types"] if "PLUGIN" in t], "no plugin library is needed"
    assert engine["profile"]["input"]["max_shape"][0] >= 4 and engine["timing_cache"]
    types = engine["layers"]["output_types"]
    assert types.get({"fp32": "fp32", "fp16": "fp16", "int8": "int8"}[precision], 0) > 0, types
    gates = json.loads((out / "gates.json").read_text())
    assert gates["passed"], gates
    assert result["backends"][f"tensorrt-{precision}"]["bbox"]["bbox_mAP_50"] > 0.3


@needs_gpu
def test_a_rebuild_reuses_the_calibration_and_timing_caches(engines, learned_model, learned_onnx, tmp_path):
    """Rebuilding into a published output reuses its caches; other calibration images invalidate the calibration."""
    from admlops.components.export_trt.export_trt import export_trt

    out = tmp_path / "engines"
    shutil.copytree(engines[0], out)
    assert json.loads((out / "tensorrt-int8" / "build.json").read_text())["engine"]["calibration_cache"] == "computed"
    export_trt(learned_model.dataset, learned_onnx, out, precisions="int8", calibration_images=16)
    engine = json.loads((out / "tensorrt-int8" / "build.json").read_text())["engine"]
    assert engine["calibration_cache"] == "reused" and engine["timing_cache"] == "reused"
    assert (out / "tensorrt-int8" / CALIBRATION_CACHE).stat().st_size > 0
    export_trt(learned_model.dataset, learned_onnx, out, precisions="int8", calibration_images=12)
    assert json.loads((out / "tensorrt-int8" / "build.json").read_text())["engine"]["calibration_cache"] == "computed"


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
