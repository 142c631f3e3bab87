"""OpenVINO on the CPU: the ONNX graph converted with ``openvino.convert_model`` (mmdeploy 1.3.1's ``mo`` /
Inference-Engine path is gone from current OpenVINO) and saved as IR (model.xml + model.bin, fp32 weights).

Precisions are what the CPU plugin computes in, set with ``INFERENCE_PRECISION_HINT`` when the model is compiled:
on CPUs with AMX or AVX-512 BF16 OpenVINO's default for an fp32 model is bf16, so ``fp32`` sets ``f32``
explicitly and ``bf16`` is a precision of its own (same IR, its own parity gate). ``int8`` of a graph that carries
its own Q/DQ (a quantization-aware trained model's) is that graph as it is (OpenVINO reads the pairs as FakeQuantize
and runs the convolutions after them in int8); otherwise it is NNCF post-training quantization of the IR, calibrated on preprocessed train images; what NNCF leaves unquantized runs in f32. Its
overflow fix (7-bit weights) follows the int8 kernels of the CPU the model is built for (admlops.cpu: on where
there is no VNNI/AMX, off where there is; the deploy config's ``openvino.int8_cpu``, default ``auto``: this
machine), recorded in build.json. A runner reports the kernels the CPU plugin chose (``runner.kernels()``).

The IR keeps the ONNX graph's dynamic axes; a runner compiles it for each input shape it is called with (the deploy
config's opt shape at load), as mmdeploy's OpenVINO wrapper reshaped per input: the CPU plugin's static-shape
kernels measured 7-12 % faster than its dynamic ones on RTMDet-tiny (int8 and fp32, 1 and 2 threads). Past
``MAX_STATIC_SHAPES`` distinct shapes (a test pipeline that does not pad to a fixed size) further shapes run on one
dynamic-shape compilation instead of compiling (about 1 s each) and holding yet another.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from admlops.backends.base import Backend, BuildResult, Calibration, Runner, Shapes, register
from admlops.backends.graphs import carried_qdq
from admlops.cpu import int8_settings

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
MAX_STATIC_SHAPES = 4


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # nncf is needed for int8 builds only
        return None


@register
class OpenVINO(Backend):
    name = "openvino"
    device = "cpu"
    precisions = ("fp32", "bf16", "int8")
    runtime_modules = ("openvino",)

    def environment(self) -> dict:
        import openvino as ov

        return {"openvino": ov.get_version(), "nncf": _version("nncf")}

    def _build(self, onnx_file: Path, out_dir: Path, precision: str, calibration: Calibration | None, shapes: Shapes,
               options: dict, cache_dir: Path | None) -> BuildResult:
        import openvino as ov

        model = ov.convert_model(str(onnx_file))
        opt = shapes.get(model.inputs[0].get_any_name(), {}).get("opt_shape")
        report = {"inference_precision_hint": HINTS[precision], "opt_shape": opt}
        if precision == "int8" and calibration is None:  # the graph's own Q/DQ: FakeQuantize in the IR, as it is
            # the overflow fix is what its training chose: 7-bit weights (qat's int8_cpu); a graph with full 8-bit
            # weights loaded on a CPU without VNNI is warned of
            carried = carried_qdq(onnx_file)
            cpu = {**int8_settings(options.get("int8_cpu", "auto")), "overflow_fix": carried["weight_bits"] == 7}
            report["quantization"] = {**carried, "cpu": cpu}
        elif precision == "int8":
            import nncf
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

            cpu = int8_settings(options.get("int8_cpu", "auto"))
            fix = OverflowFix.ENABLE if cpu["overflow_fix"] else OverflowFix.DISABLE
            # NNCF quantizes the network's convolutions, concatenations and elementwise ops; the decoding and NMS
            # after the head stay float (measured: no FakeQuantize feeds a node outside backbone/neck/bbox_head)
            model = nncf.quantize(model, nncf.Dataset(calibration.batches), subset_size=len(calibration.batches),
                                  preset=nncf.QuantizationPreset.PERFORMANCE, target_device=nncf.TargetDevice.CPU,
                                  advanced_parameters=AdvancedQuantizationParameters(overflow_fix=fix))
            report["quantization"] = {"tool": f"nncf {_version('nncf')} post-training quantization",
                                      "preset": "performance", "target_device": "CPU",
                                      "subset_size": len(calibration.batches), "overflow_fix": fix.value, "cpu": cpu}
        artifact = out_dir / "model.xml"
        ov.save_model(model, str(artifact), compress_to_fp16=False)  # the default would store fp16 weights
        return BuildResult(artifact, precision, report)

    def _load(self, artifact: Path, report: dict, threads: int) -> Runner:
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": report["inference_precision_hint"]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        model = core.read_model(str(artifact))
        requests: dict[tuple[int, ...] | None, tuple] = {}

        def request(shape: tuple[int, ...]) -> tuple:
            key = shape if shape in requests or len(requests) < MAX_STATIC_SHAPES else None  # None: dynamic
            if key not in requests:
                m = model.clone()
                if key is not None:
                    m.reshape({m.inputs[0]: list(key)})
                compiled = core.compile_model(m, "CPU", config)
                requests[key] = compiled.create_infer_request(), [(o.get_any_name(), o) for o in compiled.outputs]
            return requests[key]

        if report.get("opt_shape"):
            request(tuple(report["opt_shape"]))

        def run(batch: np.ndarray) -> dict[str, np.ndarray]:
            infer, outputs = request(batch.shape)
            result = infer.infer({0: batch})
            return {name: np.array(result[port]) for name, port in outputs}

        run.kernels = lambda: kernels([r.get_compiled_model() for r, _ in requests.values()])
        return run


def kernels(compiled_models: list) -> str:
    """The convolution kernels the CPU plugin chose, from its runtime graph: ``primitive type x count`` (e.g.
    ``brgconv_avx512_amx_I8 x 62``), the same layer counted once across the shapes compiled."""
    seen: dict[str, str] = {}
    for compiled in compiled_models:
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) == "Convolution":
                seen.setdefault(op.get_friendly_name(), info["primitiveType"].astype(str))
    return ", ".join(f"{p} x {n}" for p, n in Counter(seen.values()).most_common())
