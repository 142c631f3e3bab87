"""The one interface of a deployed-model backend (the registry of admlops.backends).

A backend turns the exported ONNX graph (mmdeploy's end2end detector: input ``input`` [N, 3, H, W] float32,
normalised as the model's test pipeline does; outputs ``dets`` [N, K, 5] and ``labels`` [N, K]) into its own
artifact at a precision, loads that artifact, and runs preprocessed batches::

    backend = get_backend("openvino")
    built = backend.build(onnx_file, out_dir, "int8", calibration=calib, shapes=shapes)
    runner = backend.load(out_dir, threads=2)
    outputs = runner(batch)            # {"dets": ndarray, "labels": ndarray}

``build`` writes only under ``out_dir`` (the caller publishes it atomically, admlops.localfs.atomic_dir), and
beside the artifact ``build.json``: what was built, from which ONNX, at which precision, and the environment
it was built in. ``load`` reads that report and refuses an artifact bound to another environment (a TensorRT
engine built on another GPU or TensorRT version) with an InputError naming the file, before touching it.

A backend module subclasses :class:`Backend`, implements ``_build``/``_load`` (and ``environment`` when its
artifacts are bound to the machine), registers itself with ``@register`` and is named in ``BACKENDS``' map.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from admlops.cpu import check_int8_build
from admlops.errors import InputError, UsageError
from admlops.localfs import file_sha256
from admlops.registry import Registry

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
STANDARD_DOMAINS = ("", "ai.onnx")  # ONNX's own operator set
BUILD_REPORT = "build.json"
# backend name -> module that registers it (imported on first use: each imports its runtime lazily)
BACKENDS: Registry[type["Backend"]] = Registry("deploy backend", {
    "onnxruntime": "admlops.backends.onnxruntime",
    "openvino": "admlops.backends.openvino",
    "tensorrt": "admlops.backends.tensorrt",
})

# mmdeploy's ``input_shapes`` convention: input name -> {"min_shape": [...], "opt_shape": [...], "max_shape": [...]}
Shapes = dict[str, dict[str, list[int]]]
# A loaded artifact: one preprocessed batch [N, 3, H, W] float32 in, output name -> array out. A graph of several
# inputs (the 3D voxel graph: voxels, num_points, coors) takes input name -> array instead (ONNX Runtime).
Runner = Callable[[np.ndarray | dict[str, np.ndarray]], dict[str, np.ndarray]]


def register(cls: type["Backend"]) -> type["Backend"]:
    """Class decorator: registers a Backend subclass in ``BACKENDS`` under its ``name``."""
    return BACKENDS.register(cls.name)(cls)


@dataclass
class Calibration:
    """Preprocessed batches to calibrate int8 on, and where they came from. A batch is what the runner takes: one
    [N, 3, H, W] float32 array for an image graph, input name -> array for a graph of several inputs (the 3D voxel
    graph: one scan's ``voxels``, ``num_points``, ``coors``)."""

    source: str  # the annotation (or infos) file of the split the inputs were taken from: named in errors and reports
    batches: list[np.ndarray | dict[str, np.ndarray]]
    images: list[str] = field(default_factory=list)  # the image (or scan) files, in batch order

    def key(self) -> str:
        """SHA-256 over the batches' names, shapes, dtypes and bytes: a calibration cache is reused only for the
        same data."""
        h = hashlib.sha256()
        for batch in self.batches:
            for name, array in sorted(batch.items()) if isinstance(batch, dict) else [("", batch)]:
                h.update(f"{name}{array.shape}{array.dtype}".encode())
                h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    def shape(self) -> list[int] | dict[str, list[int]]:
        """The first batch's shape (per input, for named batches), as build reports record it."""
        first = self.batches[0]
        return {k: list(v.shape) for k, v in first.items()} if isinstance(first, dict) else list(first.shape)


@dataclass
class BuildResult:
    artifact: Path  # the file a runner loads (model.onnx, model.xml, model.engine)
    precision: str
    report: dict = field(default_factory=dict)  # JSON-serialisable: also written to build.json beside the artifact


def load_onnx(onnx_file: Path):
    """The graph of ``onnx_file`` (weights left on disk); an InputError naming the file if it is missing or not an
    ONNX model."""
    import onnx

    onnx_file = Path(onnx_file)
    if not onnx_file.is_file():
        raise InputError(onnx_file, "no such ONNX file")
    try:
        return onnx.load(str(onnx_file), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends: the bytes are not an ONNX ModelProto
        raise InputError(onnx_file, f"not an ONNX model: {type(e).__name__}: {e}") from None


def custom_ops(onnx_file: Path) -> list[str]:
    """The graph's ops outside ONNX's own domains, as ``domain::Op`` (sorted, each once)."""
    nodes = load_onnx(onnx_file).graph.node
    return sorted({f"{n.domain}::{n.op_type}" for n in nodes if n.domain not in STANDARD_DOMAINS})


def onnx_io(onnx_file: Path) -> tuple[list[str], list[str]]:
    """Input and output names of ``onnx_file``; an InputError naming the file if it is missing or not an ONNX model."""
    model = load_onnx(onnx_file)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    outputs = [o.name for o in model.graph.output]
    if not inputs or not outputs or not model.graph.node:
        raise InputError(onnx_file, f"not an ONNX model of a network: {len(model.graph.node)} nodes, inputs {inputs}, "
                                    f"outputs {outputs}")
    return inputs, outputs


def check_calibration(calibration: Calibration | None, inputs: list[str], shapes: Shapes | None) -> None:
    """Int8 needs calibration batches the graph takes: for a graph of one input, arrays of one shape [N, 3, H, W]
    float32 inside the deploy config's min/max shapes; for a graph of several, input name -> array dicts naming
    exactly its inputs."""
    if calibration is None or not calibration.batches:
        where = calibration.source if calibration is not None else "calibration"
        raise InputError(where, "the calibration set is empty: int8 needs preprocessed inputs to calibrate on")
    if len(inputs) > 1:
        for i, batch in enumerate(calibration.batches):
            names = sorted(batch) if isinstance(batch, dict) else None
            if names != sorted(inputs) or not all(isinstance(v, np.ndarray) for v in batch.values()):
                got = f"arrays {names}" if names is not None else type(batch).__name__
                raise InputError(calibration.source, f"calibration batch {i} is {got}: the graph takes arrays named "
                                                     f"{sorted(inputs)}")
        return
    first = calibration.batches[0]
    for i, batch in enumerate(calibration.batches):
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1] != 3:
            got = f"{batch.dtype} {list(batch.shape)}" if isinstance(batch, np.ndarray) else type(batch).__name__
            raise InputError(calibration.source, f"calibration batch {i} is {got}: expected float32 [N, 3, H, W]")
        if batch.shape != first.shape:
            raise InputError(calibration.source, f"calibration batch {i} has shape {list(batch.shape)}, batch 0 "
                                                 f"{list(first.shape)}: every batch must have one shape")
    input_name = inputs[0]
    limits = (shapes or {}).get(input_name)
    if limits:
        lo, hi = limits["min_shape"], limits["max_shape"]
        if len(lo) != first.ndim or any(s < a or s > b for s, a, b in zip(first.shape, lo, hi)):
            raise InputError(calibration.source, f"calibration batches have shape {list(first.shape)}, outside the deploy "
                                                 f"config's input shapes for {input_name!r}: min {lo}, max {hi}")


def check_environment(built: dict, here: dict, keys: tuple[str, ...], artifact: Path) -> None:
    """Refuse to run ``artifact`` where any of ``keys`` of the environment it was built in differs from ``here``."""
    differs = [f"{k} {built.get(k)!r} (here {here.get(k)!r})" for k in keys if built.get(k) != here.get(k)]
    if differs:
        raise InputError(artifact, "built for another environment, cannot run here: " + "; ".join(differs) +
                         ". Rebuild it on this machine")


def read_report(out_dir: Path) -> dict:
    """``out_dir/build.json``; an InputError naming it when it is missing or unreadable."""
    path = Path(out_dir) / BUILD_REPORT
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "missing: not a directory that a backend built (it cannot tell what built the artifact)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(path, f"unreadable build report: {e}") from None


class Backend(ABC):
    name: str = ""
    device: str = "cpu"  # "cpu" or "cuda"
    precisions: tuple[str, ...] = ("fp32",)
    # environment() keys an artifact is bound to: load refuses it where any differs (TensorRT: version, GPU)
    bound_to: tuple[str, ...] = ()
    # modules the runner needs imported (the runtime and what it loads): the benchmark worker imports them before
    # its memory baseline, so a runtime's own import is not counted as memory its inference adds
    runtime_modules: tuple[str, ...] = ()
    # ONNX domains of non-standard ops the runtime runs (a plugin or a custom-op library it loads); a graph with an
    # op of another domain is refused before anything is built (``check_graph``)
    custom_domains: tuple[str, ...] = ()

    def check_graph(self, onnx_file: Path) -> None:
        """A UsageError naming every op of ``onnx_file`` this backend cannot run (outside ONNX's own domains and
        ``custom_domains``), so export refuses the target with the reason instead of failing in its build."""
        if missing := [op for op in custom_ops(onnx_file) if op.split("::")[0] not in self.custom_domains]:
            raise UsageError(f"deploy target {self.name}: the graph {Path(onnx_file).name} uses {', '.join(missing)}, "
                             f"which {self.name} cannot run (no plugin for it here): leave {self.name} out of the "
                             "targets for this model")

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            raise UsageError(f"backend {self.name!r} has no precision {precision!r}: expected one of {', '.join(self.precisions)}")

    def environment(self) -> dict:
        """The runtime's versions and device here, recorded in build.json (and compared on load for ``bound_to``)."""
        return {}

    def build(self, onnx_file: Path, out_dir: Path, precision: str, calibration: Calibration | None = None,
              shapes: Shapes | None = None, options: dict | None = None, cache_dir: Path | None = None) -> BuildResult:
        """Build this backend's artifact from ``onnx_file`` into ``out_dir`` (created) and write ``build.json``.

        ``calibration``: preprocessed train batches (required for int8, unless the graph carries its own Q/DQ: a
        quantization-aware trained model's, which int8 takes as it is: ``_build`` then gets None). ``shapes``: the
        deploy config's min/opt/max input shapes. ``options``: backend settings from the deploy config (TensorRT:
        ``max_workspace_size``).
        ``cache_dir``: an earlier build's directory whose caches (TensorRT's calibration and timing caches) are
        reused where they still match (TensorRT's Q/DQ graph and timing cache); None builds from scratch.
        """
        from admlops.backends.graphs import carried_qdq

        self.check_precision(precision)
        onnx_file, out_dir = Path(onnx_file), Path(out_dir)
        inputs, outputs = onnx_io(onnx_file)
        self.check_graph(onnx_file)
        carried = carried_qdq(onnx_file)
        if carried and precision != "int8":
            raise UsageError(f"{onnx_file.name} carries its own int8 quantization ({carried['q_nodes']} QuantizeLinear "
                             f"nodes): build it as int8, not {precision}")
        if precision == "int8" and not carried:
            check_calibration(calibration, inputs, shapes)
        out_dir.mkdir(parents=True, exist_ok=True)
        calibration = calibration if precision == "int8" and not carried else None
        result = self._build(onnx_file, out_dir, precision, calibration, shapes or {}, options or {},
                             Path(cache_dir) if cache_dir else None)
        report = {
            "backend": self.name, "precision": precision, "device": self.device,
            "artifact": result.artifact.name, "artifact_bytes": result.artifact.stat().st_size,
            "onnx": onnx_file.name, "onnx_sha256": file_sha256(onnx_file), "inputs": inputs, "outputs": outputs,
            "calibration": None if calibration is None else {
                "source": calibration.source, "batches": len(calibration.batches),
                "shape": calibration.shape(), "sha256": calibration.key()},
            "environment": self.environment(),
            **result.report,
        }
        (out_dir / BUILD_REPORT).write_text(json.dumps(report, indent=2))
        return BuildResult(result.artifact, precision, report)

    def load(self, out_dir: Path, threads: int = 0) -> Runner:
        """Load what ``build`` wrote in ``out_dir``; ``threads`` 0 = the runtime's default (CPU backends)."""
        out_dir = Path(out_dir)
        report = read_report(out_dir)
        artifact = out_dir / report.get("artifact", "")
        if report.get("backend") != self.name:
            raise InputError(out_dir / BUILD_REPORT, f"built by backend {report.get('backend')!r}, not {self.name!r}")
        if not artifact.is_file():
            raise InputError(artifact, "the artifact named in build.json is missing")
        if self.bound_to:
            check_environment(report.get("environment", {}), self.environment(), self.bound_to, artifact)
        if "cpu" in report.get("quantization", {}):
            check_int8_build(report["quantization"]["cpu"], artifact)
        return self._load(artifact, report, threads)

    @abstractmethod
    def _build(self, onnx_file: Path, out_dir: Path, precision: str, calibration: Calibration | None, shapes: Shapes,
               options: dict, cache_dir: Path | None) -> BuildResult:
        """Write the artifact under ``out_dir``; the inputs are checked already. Returns its path and what to report."""

    @abstractmethod
    def _load(self, artifact: Path, report: dict, threads: int) -> Runner:
        """A runner of ``artifact`` (its build report given)."""
