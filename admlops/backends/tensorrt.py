"""TensorRT 10 and 11 on an NVIDIA GPU: an engine built from the exported ONNX with TensorRT's own Python API, run by
tensor name.

Build: one path for both majors (``SUPPORTED_MAJORS``; any other installed version is refused naming it): a
strongly typed network (TensorRT 11 removed weak typing — the FP16/INT8 builder flags, implicit int8 calibrators
and their caches — and 10 has strong typing as an option), so the ONNX graph itself carries the precision
(admlops.backends.graphs): ``fp32`` the exported graph (TF32 off where the flag exists: TensorRT would compute in
TF32 on Ampere and later), ``fp16`` the graph with its network in fp16 and box decoding and NMS in fp32, ``int8``
a Q/DQ graph with symmetric signed int8 (TensorRT's explicit quantization) calibrated on preprocessed train images,
or, for a quantization-aware trained model, its own Q/DQ graph as it is (refused, naming the file, unless every zero
point is int8 0).
The same graphs run under ONNX Runtime on a CPU, which is how their accuracy is checked without a GPU. Explicit
batch, one optimization profile from the deploy config's min/opt/max input shapes, a workspace limit, a timing
cache. The engine is ``model.engine``; beside it the graph it was built from (``model.fp16.onnx`` /
``model.int8.onnx`` with ``qdq.json``, the key of what the Q/DQ graph was calibrated from), ``timing.cache``, and
``build.json`` with the TensorRT, CUDA and GPU versions, the profile, the per-layer output types (the engine
inspector, DETAILED verbosity; TensorRT 10's ``Format/Datatype`` field or 11's split one) and the engine size. A
rebuild given the previous output as ``cache_dir`` reuses the Q/DQ graph when it was calibrated from the same graph
and data, and the timing cache when TensorRT accepts it.

NMS: the graph is the one every backend builds from (mmdeploy's onnxruntime end2end export), whose
``NonMaxSuppression`` is a standard ONNX op; TensorRT's ONNX parser maps it onto its own INMSLayer, so the
engine needs no plugin library (mmdeploy's TRTBatchedNMS would have to be rebuilt, ABI-matched, for every
TensorRT) and the same graph is measured on all backends. Its outputs have data-dependent shapes, so the runner
gets them through an IOutputAllocator (``notify_shape`` gives the real shape after execution).

Run: ``set_input_shape``, ``set_tensor_address`` and ``execute_async_v3`` on a CUDA stream (mmdeploy 1.3.1's
wrapper calls the binding-index APIs TensorRT 10 removed). Device memory is torch's, so nothing beyond the
deploy image's torch and tensorrt is needed.

An engine is specific to its GPU model and TensorRT version: both are recorded, and ``load`` refuses an engine
built on another with an InputError naming the file. ``tensorrt`` (and CUDA) are imported only here, lazily.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from admlops.backends.base import Backend, BuildResult, Calibration, Runner, Shapes, register
from admlops.backends.graphs import carried_qdq, fp16_graph, quantize_qdq
from admlops.localfs import file_sha256
from admlops.errors import AdmlopsError, InputError, UsageError

NO_CUDA = "no CUDA device: TensorRT engines need an NVIDIA GPU"
SUPPORTED_MAJORS = (10, 11)
DEFAULT_WORKSPACE = 1 << 30  # bytes
ENGINE = "model.engine"
TIMING_CACHE = "timing.cache"
GRAPHS = {"fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}  # the graph each precision is built from
QDQ_KEY = "qdq.json"

# substrings of the inspector's "Format/Datatype" -> type; the first that matches wins (BFLOAT16 before FLOAT,
# UINT8 before INT8: kernel-generated layers report UInt8, UInt32, UInt64, Int16, Double and FP4 as well)
_FORMAT_TYPES = (("BFLOAT16", "bf16"), ("FP8", "fp8"), ("FP4", "fp4"), ("FP16", "fp16"), ("HALF", "fp16"),
                 ("UINT8", "uint8"), ("UINT32", "uint32"), ("UINT64", "uint64"), ("INT8", "int8"), ("INT16", "int16"),
                 ("FP32", "fp32"), ("FLOAT", "fp32"), ("DOUBLE", "fp64"), ("INT32", "int32"), ("INT64", "int64"),
                 ("BOOL", "bool"))


def _tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise AdmlopsError("tensorrt is not installed here: TensorRT engines are built and run in the deploy image "
                           "(images/deploy), on an NVIDIA GPU") from None
    check_version(tensorrt.__version__)
    return tensorrt


def check_version(version: str) -> int:
    """The major of an installed TensorRT ``version``; a UsageError naming it outside ``SUPPORTED_MAJORS``."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        major = None
    if major not in SUPPORTED_MAJORS:
        raise UsageError(f"tensorrt {version} is installed; ADMLOps builds and runs engines with TensorRT "
                         f"{SUPPORTED_MAJORS[0]}.x to {SUPPORTED_MAJORS[-1]}.x (strongly typed networks)")
    return major


def cuda_device() -> dict:
    """The GPU an engine is built for or run on, and torch's CUDA runtime; an error without a CUDA device."""
    import torch

    if not torch.cuda.is_available():
        raise AdmlopsError(NO_CUDA)
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}", "cuda_runtime": torch.version.cuda,
            "gpu_memory_mib": props.total_memory // 2**20}


def profile_shapes(shapes: Shapes, name: str, network_shape: list[int]) -> tuple[list[int], list[int], list[int]]:
    """min/opt/max shapes of input ``name`` from the deploy config, checked against each other and the network's
    static dimensions (-1 = dynamic)."""
    if name not in shapes:
        raise UsageError(f"the deploy config's input_shapes has no entry for the network input {name!r} "
                         f"(shape {network_shape}): TensorRT needs its min/opt/max shapes")
    try:
        lo, opt, hi = (list(map(int, shapes[name][k])) for k in ("min_shape", "opt_shape", "max_shape"))
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"input_shapes[{name!r}] = {shapes[name]!r}: expected min_shape, opt_shape and max_shape lists") from None
    if not len(lo) == len(opt) == len(hi) == len(network_shape):
        raise UsageError(f"input_shapes[{name!r}]: min {lo}, opt {opt}, max {hi} must all have the network input's rank "
                         f"{len(network_shape)} (shape {network_shape})")
    for a, b, c, d in zip(lo, opt, hi, network_shape):
        if not 0 < a <= b <= c or (d != -1 and not a == c == d):
            raise UsageError(f"input_shapes[{name!r}]: min {lo} <= opt {opt} <= max {hi} must hold in every dimension "
                             f"and match the network's static ones ({network_shape})")
    return lo, opt, hi


def graph_key(onnx_sha256: str, calibration: Calibration) -> str:
    """What a Q/DQ graph depends on: the exported graph and the calibration data (not TensorRT: it is ONNX)."""
    return hashlib.sha256(f"{onnx_sha256}\0{calibration.key()}".encode()).hexdigest()


def reusable_graph(cache_dir: Path | None, key: str) -> Path | None:
    """The Q/DQ graph an earlier build left in ``cache_dir``, if it was calibrated for ``key``; else None."""
    if cache_dir is None:
        return None
    graph = Path(cache_dir) / GRAPHS["int8"]
    try:
        meta = json.loads((Path(cache_dir) / QDQ_KEY).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(meta, dict) and meta.get("key") == key and graph.is_file() and graph.stat().st_size > 0
    return graph if ok else None


def precision_graph(onnx_file: Path, out_dir: Path, precision: str, calibration: Calibration | None,
                    cache_dir: Path | None) -> tuple[Path, dict]:
    """The ONNX graph that carries ``precision`` (module doc), written into ``out_dir``, and what it is."""
    import shutil

    if precision == "fp32":
        return onnx_file, {"graph": "the exported graph (fp32)"}
    graph = out_dir / GRAPHS[precision]
    if precision == "fp16":
        return graph, {"graph": GRAPHS[precision], "fp16": fp16_graph(onnx_file, graph)}
    if calibration is None:  # the graph's own Q/DQ (quantization-aware training), as it is, if TensorRT takes it
        carried = carried_qdq(onnx_file)
        if not carried["signed_symmetric"]:
            raise InputError(onnx_file, "a Q/DQ graph TensorRT cannot build: its explicit quantization takes signed "
                                        "symmetric int8 only (zero points int8 0), and these nodes have other zero "
                                        f"points: {', '.join(carried['not_signed_symmetric'])}")
        return onnx_file, {"graph": "the exported graph's own Q/DQ", "quantization": carried}
    key = graph_key(file_sha256(onnx_file), calibration)
    previous = reusable_graph(cache_dir, key)
    if previous is not None:
        shutil.copyfile(previous, graph)
        settings = json.loads((Path(cache_dir) / QDQ_KEY).read_text())["quantization"]
    else:
        settings = quantize_qdq(onnx_file, graph, calibration, out_dir, signed=True)
    (out_dir / QDQ_KEY).write_text(json.dumps({"key": key, "quantization": settings}))
    return graph, {"graph": GRAPHS[precision], "quantization": settings,
                   "qdq_graph": "reused" if previous is not None else "calibrated"}


def _output_type(fmt: str) -> str:
    fmt = fmt.upper()
    return next((name for key, name in _FORMAT_TYPES if key in fmt), "unknown")


def layer_precisions(info: dict) -> dict:
    """Per layer of an engine inspector's JSON (``get_engine_information(LayerInformationFormat.JSON)`` at DETAILED
    profiling verbosity): name, type and the datatype of its first output; plus a count per datatype."""
    layers = []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):  # LAYER_NAMES_ONLY verbosity: names without details
            layers.append({"name": layer, "type": None, "output_type": "unknown"})
            continue
        out = (layer.get("Outputs") or [{}])[0]
        # TensorRT 10: "Format/Datatype"; 11 splits it into a format and a data type field
        fmt = out.get("Format/Datatype") or out.get("DataType") or out.get("Datatype") or out.get("Format", "")
        layers.append({"name": layer.get("Name"), "type": layer.get("LayerType"), "output_type": _output_type(fmt)})
    return {"count": len(layers), "output_types": dict(Counter(x["output_type"] for x in layers)), "layers": layers}


@functools.cache
def _classes():
    """TensorRT callback classes (defined on first use: they subclass tensorrt's types)."""
    trt = _tensorrt()
    import torch

    class Logger(trt.ILogger):
        """Prints warnings and errors, and keeps the errors for the exception that follows a failed call."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                print(f"[TensorRT] {msg}", flush=True)

    class OutputAllocator(trt.IOutputAllocator):
        """GPU buffers for outputs whose shapes are known only after execution (NMS), grown as needed."""

        def __init__(self):
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, torch.Tensor] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name, memory, size, alignment):
            buf = self.buffers.get(tensor_name)
            if buf is None or buf.numel() < size:
                buf = self.buffers[tensor_name] = torch.empty(max(int(size), 1), dtype=torch.uint8, device="cuda")
            return buf.data_ptr()

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(shape)

    return Logger, OutputAllocator


class EngineRunner:
    """Runs a deserialized engine by tensor name: one input, outputs through an IOutputAllocator."""

    def __init__(self, runtime, logger, engine, engine_file: Path):
        import torch

        trt = _tensorrt()
        _, OutputAllocator = _classes()
        self._keep = (runtime, logger)  # TensorRT wants both alive as long as the engine
        self.engine, self.context, self.file = engine, engine.create_execution_context(), engine_file
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: torch.from_numpy(np.empty(0, trt.nptype(engine.get_tensor_dtype(n)))).dtype for n in names}
        self.allocator = OutputAllocator()
        for name in self.outputs:
            self.context.set_output_allocator(name, self.allocator)
        self.stream = torch.cuda.Stream()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        (name,) = self.inputs
        x = torch.from_numpy(np.ascontiguousarray(batch)).to("cuda", self.dtypes[name])
        if not self.context.set_input_shape(name, tuple(x.shape)):
            raise InputError(self.file, f"input {name!r} of shape {list(x.shape)} is outside the engine's optimization "
                                        f"profile {self.engine.get_tensor_profile_shape(name, 0)}")
        self.context.set_tensor_address(name, x.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise AdmlopsError(f"{self.file}: TensorRT execution failed (its log above says why)")
        self.stream.synchronize()
        out = {}
        for n in self.outputs:
            shape, dtype = self.allocator.shapes[n], self.dtypes[n]
            nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
            out[n] = self.allocator.buffers[n][:nbytes].view(dtype).reshape(shape).cpu().numpy()
        return out


@register
class TensorRT(Backend):
    name = "tensorrt"
    device = "cuda"
    precisions = ("fp32", "fp16", "int8")
    bound_to = ("tensorrt", "gpu", "compute_capability")
    runtime_modules = ("tensorrt",)

    def environment(self) -> dict:
        return {"tensorrt": _tensorrt().__version__, **cuda_device()}

    def _build(self, onnx_file: Path, out_dir: Path, precision: str, calibration: Calibration | None, shapes: Shapes,
               options: dict, cache_dir: Path | None) -> BuildResult:
        trt = _tensorrt()
        cuda_device()
        Logger, _ = _classes()
        logger = Logger()
        graph, typed = precision_graph(onnx_file, out_dir, precision, calibration, cache_dir)
        builder = trt.Builder(logger)
        # strongly typed (the graph's types are the precision), explicit batch: TensorRT 10's and 11's one mode
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(graph)):
            errors = [f"node {e.node()}: {e.desc()}" for e in map(parser.get_error, range(parser.num_errors))]
            what = "it" if graph == onnx_file else f"its {precision} graph ({graph.name})"
            raise InputError(onnx_file, f"TensorRT's ONNX parser refused {what}: " + "; ".join(errors or logger.errors))
        layer_types = Counter(str(network.get_layer(i).type).rsplit(".", 1)[-1] for i in range(network.num_layers))

        config = builder.create_builder_config()
        workspace = int(options.get("max_workspace_size", DEFAULT_WORKSPACE))
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        profile, profiles = builder.create_optimization_profile(), {}
        for i in range(network.num_inputs):
            inp = network.get_input(i)
            lo, opt, hi = profile_shapes(shapes, inp.name, list(inp.shape))
            profile.set_shape(inp.name, lo, opt, hi)
            profiles[inp.name] = {"min_shape": lo, "opt_shape": opt, "max_shape": hi}
        config.add_optimization_profile(profile)

        timing_bytes = (cache_dir / TIMING_CACHE).read_bytes() if cache_dir and (cache_dir / TIMING_CACHE).is_file() else b""
        timing = config.create_timing_cache(timing_bytes)
        timing_state = "reused" if timing_bytes else "new"
        # a cache file TensorRT cannot read (None) or one from another device or version (refused)
        if timing is None or not config.set_timing_cache(timing, ignore_mismatch=False):
            timing, timing_state = config.create_timing_cache(b""), "new (the earlier one did not match)"
            config.set_timing_cache(timing, ignore_mismatch=False)

        report = {"engine": {"workspace_bytes": workspace, "profile": profiles, "timing_cache": timing_state,
                             "nms": "TensorRT INMSLayer from ONNX NonMaxSuppression", "typing": "strong", **typed,
                             "network_layer_types": dict(layer_types)}}
        if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):  # on by default on Ampere and later
            config.clear_flag(trt.BuilderFlag.TF32)

        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise AdmlopsError(f"{onnx_file}: TensorRT could not build a {precision} engine: " + "; ".join(logger.errors))
        artifact = out_dir / ENGINE
        artifact.write_bytes(memoryview(serialized))
        (out_dir / TIMING_CACHE).write_bytes(memoryview(config.get_timing_cache().serialize()))

        engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
        report["engine"]["layers"] = layer_precisions(info)
        return BuildResult(artifact, precision, report)

    def _load(self, artifact: Path, report: dict, threads: int) -> Runner:
        trt = _tensorrt()
        Logger, _ = _classes()
        logger = Logger()
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(artifact.read_bytes())
        if engine is None:
            raise InputError(artifact, "TensorRT could not deserialize this engine: " + "; ".join(logger.errors))
        return EngineRunner(runtime, logger, engine, artifact)
