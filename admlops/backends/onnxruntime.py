"""ONNX Runtime: the exported graph as it is (fp32), or statically quantized to int8 (QDQ).

int8 is ``onnxruntime.quantization.quantize_static`` in QDQ format with per-channel int8 weights (the graph is
raised to opset 13 for that) and uint8 activations, calibrated (min/max) on preprocessed train inputs (images; for
the 3D voxel graph, voxelized train scans). Only the network's convolutions are quantized: the box decoding and NMS
after them stay float, since int8 box coordinates and scores would move every detection; for the same reason a
convolution whose output is a graph output (the 3D voxel graph's head: class scores, box deltas, directions,
decoded outside the graph) stays float. Measured on the detection3d demo model (200 iterations, 40 val scans):
class-mean 3D AP40 moderate 30.52 in PyTorch and ONNX Runtime fp32; int8 with the head quantized 25.09 (-5.4
points; percentile calibration 27.53), with the head float 30.41 (-0.1).

Why uint8 activations (U8S8): ONNX Runtime's x86 integer kernels (MLAS) multiply unsigned activations by signed
weights with VNNI/AMX instructions; signed activations (S8S8) take a slower path. Measured side by side on this
CPU (AVX-512 VNNI, AMX), one thread, per call: RTMDet-tiny 640x192 fp32 41 ms, int8 S8S8 66-75 ms, int8 U8S8
26-28 ms; PointPillars (pointpillars_kitti_cpu) network fp32 80-83 ms, S8S8 53 ms, U8S8 39 ms. On x86 CPUs
without VNNI, U8S8 sums pairs of products in a saturating 16-bit intermediate: there the weights are quantized to
7 bits (``reduce_range``, ONNX Runtime's remedy for non-VNNI machines), chosen by the int8 kernels of the CPU the
model is built for (admlops.cpu; the deploy config's ``onnxruntime.int8_cpu``, default ``auto``: this machine) and
recorded in build.json. MLAS picks its kernels by the CPU's flags at run time and does not report them: a runner's
``kernels()`` names the class those flags select.

A quantization-aware trained model's export carries its own Q/DQ graph (admlops/mmext/quantized.py: signed int8
before each convolution, at the ranges it was calibrated and fine-tuned with): int8 takes it as it is. ONNX Runtime fuses a Q/DQ pair
into an integer kernel only where the convolution's output is quantized too, which that graph's are not, so it runs
the convolutions in fp32 on the dequantized values (the int8 arithmetic exactly, at fp32's speed or a little below:
measured on RTMDet-tiny, one thread, 68 ms against 55 ms fp32); OpenVINO and TensorRT run that graph in int8.

The CPU execution provider runs everywhere; where ONNX Runtime has the CUDA provider (the deploy image's
onnxruntime-gpu) it is used first. mmdeploy's custom-op library is registered only for a graph with custom ops
(the end2end graph has none; a graph exported with mmcv ops would).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from admlops.backends.base import Backend, BuildResult, Calibration, Runner, Shapes, custom_ops, register
from admlops.backends.graphs import carried_qdq, quantize_qdq
from admlops.cpu import int8_kernels, int8_settings
from admlops.localfs import link_or_copy


def session(onnx_file: Path, threads: int = 0):
    """An InferenceSession on the best provider here (CUDA when available, else CPU); mmdeploy's custom-op library
    is registered only for a graph that uses custom ops (the end2end detector uses none)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # Worker threads sleep between runs instead of spinning: the work between two runs (a 3D detector's
    # voxelization and NMS in torch, the caller's own pre- and post-processing) needs those cores. Measured on the
    # detection3d demo model, 2 threads: with spinning, the torch stages around the graph took p90 21-27 ms
    # instead of 1-4 ms.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if any(op.split("::")[0] == "mmdeploy" for op in custom_ops(onnx_file)):
        from mmdeploy.backend.onnxruntime.init_plugins import get_ops_path

        opts.register_custom_ops_library(get_ops_path())
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(onnx_file), sess_options=opts, providers=providers)


@register
class OnnxRuntime(Backend):
    name = "onnxruntime"
    device = "cpu"
    precisions = ("fp32", "int8")
    custom_domains = ("com.microsoft", "mmdeploy")  # its contrib ops; mmdeploy's custom-op library, loaded when used
    runtime_modules = ("onnxruntime", "mmdeploy.backend.onnxruntime.init_plugins")  # mmdeploy's custom ops (imports torch)

    def environment(self) -> dict:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "providers": ort.get_available_providers()}

    def _build(self, onnx_file: Path, out_dir: Path, precision: str, calibration: Calibration | None, shapes: Shapes,
               options: dict, cache_dir: Path | None) -> BuildResult:
        artifact = out_dir / "model.onnx"
        if precision == "fp32":
            link_or_copy(onnx_file, artifact)
            return BuildResult(artifact, precision, {})
        if calibration is None:  # the graph's own Q/DQ, as it is
            link_or_copy(onnx_file, artifact)
            return BuildResult(artifact, precision, {"quantization": carried_qdq(onnx_file)})
        cpu = int8_settings(options.get("int8_cpu", "auto"))
        settings = quantize_qdq(onnx_file, artifact, calibration, out_dir, reduce_range=cpu["overflow_fix"])
        return BuildResult(artifact, precision, {"quantization": {**settings, "cpu": cpu}})

    def _load(self, artifact: Path, report: dict, threads: int) -> Runner:
        sess = session(artifact, threads)
        input_name = sess.get_inputs()[0].name
        names = [o.name for o in sess.get_outputs()]

        def run(batch: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, sess.run(names, batch if isinstance(batch, dict) else {input_name: batch})))

        quantization = report.get("quantization") or {}
        if "cpu" in quantization:
            kind = f"MLAS U8S8 {int8_kernels()} (by CPU flags)"
        elif quantization:  # a Q/DQ pair before a convolution whose output is not quantized: fused into no kernel
            kind = "MLAS fp32 on the graph's dequantized int8 values (its convolutions' outputs carry no Q/DQ)"
        else:
            kind = "MLAS fp32"
        run.kernels = lambda: f"{kind}; {sess.get_providers()[0]}"
        return run
