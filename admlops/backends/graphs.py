"""Graphs that carry their own precision: the exported fp32 ONNX graph rewritten so that every tensor's type says how
it is computed. A strongly typed TensorRT network (TensorRT 10's option, 11's only mode: no precision flags, no
implicit int8 calibration) builds exactly what its graph says, and ONNX Runtime runs the same graphs on a CPU, which
is how the precision decisions are checked without a GPU.

Two rewrites, both keeping the graph's inputs and outputs fp32:

- ``fp16_graph``: the network — every convolution and everything computed before one (backbone, neck, head) — in
  fp16; what follows the last convolutions (box decoding, score selection, NMS: where fp16's 11-bit mantissa would
  move boxes by pixels at 1280 wide and reorder near-equal scores) stays fp32. Casts sit at the two borders.
- ``quantize_qdq``: int8 QuantizeLinear/DequantizeLinear pairs around the network's convolutions, calibrated
  (min/max) on preprocessed train inputs, per-channel weights; box decoding and NMS stay float, and so does a
  convolution whose output is a graph output (the 3D voxel graph's head). ONNX Runtime's CPU int8 uses unsigned
  asymmetric activations (its fast U8S8 kernels); TensorRT takes only symmetric signed int8 (zero points 0).

A quantization-aware trained model's exported graph carries its own Q/DQ pairs (admlops/mmext/quantized.py):
``carried_qdq`` tells such a graph apart (and whether TensorRT can take it), and the int8 targets build from it as
it is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from admlops.backends.base import Calibration

QUANTIZED_OPS = ["Conv"]
QUANT_OPSET = 13  # the first opset whose DequantizeLinear takes a per-channel axis (mmdeploy exports 11)
# inputs that ONNX types as float32 whatever the data's type: they stay fp32 inside an fp16 network
_FLOAT32_INPUTS = {"Resize": (1, 2)}  # roi, scales


def network_nodes(graph) -> set[int]:
    """Indices of the nodes that compute the network: every Conv and every node a Conv depends on."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    todo = [i for i, node in enumerate(graph.node) if node.op_type == "Conv"]
    seen: set[int] = set()
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo += [producer[t] for t in graph.node[i].input if t in producer]
    return seen


def fp16_graph(onnx_file: str | Path, out_file: str | Path) -> dict:
    """Write ``onnx_file`` with its network in fp16 (module doc) to ``out_file``; returns what was converted."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(onnx_file))
    graph = model.graph
    net = network_nodes(graph)
    inits = {t.name: t for t in graph.initializer}
    halves: dict[str, str] = {}  # fp32 initializer -> its fp16 copy

    def half(name: str) -> str:
        if name not in halves:
            halves[name] = f"{name}__fp16"
            graph.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(inits[name]).astype(np.float16), halves[name]))
        return halves[name]

    produced_in_net = {out for i in net for out in graph.node[i].output}
    graph_inputs = {t.name for t in graph.input if t.type.tensor_type.elem_type == TensorProto.FLOAT}
    to_half: dict[str, str] = {}  # an fp32 tensor entering the network -> its fp16 cast
    fp32_only = {graph.node[i].input[k] for i in net for k in _FLOAT32_INPUTS.get(graph.node[i].op_type, ())
                 if k < len(graph.node[i].input)}
    casts = []
    for i in sorted(net):
        node = graph.node[i]
        if set(node.output) & fp32_only:  # a Constant of Resize's scales
            continue
        keep32 = _FLOAT32_INPUTS.get(node.op_type, ())
        for k, name in enumerate(node.input):
            if k in keep32 or not name:
                continue
            if name in inits and inits[name].data_type == TensorProto.FLOAT:
                node.input[k] = half(name)
            elif name in graph_inputs:
                if name not in to_half:
                    to_half[name] = f"{name}__fp16"
                    casts.append(helper.make_node("Cast", [name], [to_half[name]], name=f"{name}__to_fp16",
                                                  to=TensorProto.FLOAT16))
                node.input[k] = to_half[name]
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
    # back to fp32 where a network tensor leaves the network: a graph output keeps its name (the network's tensor
    # is renamed and cast into it); what post-processing reads gets a cast of its own
    outputs = {t.name for t in graph.output} & produced_in_net
    for i in net:
        node = graph.node[i]
        node.input[:] = [f"{t}__fp16" if t in outputs else t for t in node.input]
        node.output[:] = [f"{t}__fp16" if t in outputs else t for t in node.output]
    casts += [helper.make_node("Cast", [f"{t}__fp16"], [t], name=f"{t}__to_fp32", to=TensorProto.FLOAT)
              for t in sorted(outputs)]
    to_float: dict[str, str] = {}
    for i, node in enumerate(graph.node):
        if i in net:
            continue
        for k, name in enumerate(node.input):
            if name in produced_in_net and name not in outputs:
                if name not in to_float:
                    to_float[name] = f"{name}__fp32"
                    casts.append(helper.make_node("Cast", [name], [to_float[name]], name=f"{name}__to_fp32",
                                                  to=TensorProto.FLOAT))
                node.input[k] = to_float[name]
    graph.node.extend(casts)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]  # fp32 weights the network now reads as fp16
    for t in unused:
        graph.initializer.remove(t)
    del graph.value_info[:]  # types changed: shapes and types are inferred again by whoever loads it
    model = _sorted(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_file))
    return {"fp16": "network (convolutions and everything before them)", "fp32": "post-processing (box decoding, "
            "NMS) and the graph's inputs and outputs", "network_nodes": len(net),
            "fp16_initializers": len(halves)}


def _sorted(model):
    """The model with its nodes in topological order (casts were appended at the end)."""
    graph = model.graph
    ready = {t.name for t in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"the graph has a cycle or a missing input at node {rest[0].name!r}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
    return model


def quantize_qdq(onnx_file: Path, out_file: Path, calibration: Calibration, work: Path, signed: bool = False,
                 reduce_range: bool = False) -> dict:
    """Statically quantize ``onnx_file``'s convolutions into a QDQ graph at ``out_file`` (module doc): int8
    per-channel symmetric weights; activations uint8 asymmetric, or with ``signed`` int8 symmetric (TensorRT's);
    ``reduce_range``: 7-bit weights (ONNX Runtime on x86 without VNNI). Returns the settings, for build.json."""
    import onnx
    import onnx.version_converter
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, input_name: str):
            self._batches = iter(tqdm(calibration.batches, desc="int8 calibration", unit="batch"))
            self._name = input_name

        def get_next(self):
            batch = next(self._batches, None)
            return batch if batch is None or isinstance(batch, dict) else {self._name: batch}

    prepared = work / "prepared.onnx"
    # ONNX shape inference and graph optimisation first, as ONNX Runtime recommends before quantizing (its symbolic
    # shape pass cannot follow NonMaxSuppression's data-dependent outputs, so that one is skipped); then opset 13.
    quant_pre_process(str(onnx_file), str(prepared), skip_symbolic_shape=True)
    model = onnx.version_converter.convert_version(onnx.load(str(prepared)), QUANT_OPSET)
    onnx.save(model, str(prepared))
    outputs = {o.name for o in model.graph.output}
    head = [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and set(n.output) & outputs]
    quantize_static(str(prepared), str(out_file), Reader(model.graph.input[0].name), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=head, reduce_range=reduce_range,
                    extra_options={"ActivationSymmetric": signed, "WeightSymmetric": True,
                                   # TensorRT's Q/DQ is int8 only: its biases stay float (ONNX Runtime's in int32)
                                   "QuantizeBias": not signed})
    prepared.unlink()
    return {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ", "opset": QUANT_OPSET,
            "weights": "int8 per channel, symmetric" + (", 7-bit range (reduce_range)" if reduce_range else ""),
            "activations": "int8 symmetric" if signed else "uint8", "biases": "float" if signed else "int32",
            "calibration": "minmax", "ops": QUANTIZED_OPS,
            "float": "convolutions whose output is a graph output; box decoding and NMS"}


def carried_qdq(onnx_file: str | Path) -> dict | None:
    """The int8 quantization ``onnx_file`` carries itself (a quantization-aware trained model's export): None when it
    has no QuantizeLinear; else how many Q/DQ nodes and whether every zero point is int8 0 (signed symmetric, the
    only kind TensorRT takes; a Q without a zero point is uint8 by ONNX's definition)."""
    from onnx import TensorProto, numpy_helper

    from admlops.backends.base import load_onnx

    graph = load_onnx(Path(onnx_file)).graph
    nodes = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not any(n.op_type == "QuantizeLinear" for n in nodes):
        return None
    tensors = {t.name: t for t in graph.initializer}
    tensors.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"})
    unsigned = []
    for n in nodes:
        zero = tensors.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zero is None or zero.data_type != TensorProto.INT8 or numpy_helper.to_array(zero).any():
            unsigned.append(n.name)
    levels = _weight_levels(nodes, tensors)
    return {"tool": "the graph's own QuantizeLinear/DequantizeLinear (quantization-aware training)",
            "q_nodes": sum(n.op_type == "QuantizeLinear" for n in nodes),
            "dq_nodes": sum(n.op_type == "DequantizeLinear" for n in nodes),
            "signed_symmetric": not unsigned, "not_signed_symmetric": unsigned[:5],
            "weight_bits": None if levels is None else 7 if levels <= 63 else 8}


def _weight_levels(nodes, tensors: dict) -> int | None:
    """The largest magnitude of the integers the graph's constant weights are quantized to (None: it quantizes no
    constant): 63 or less means 7-bit weights, which int8 kernels without VNNI sum without saturating."""
    from onnx import numpy_helper

    top = None
    for n in nodes:
        if n.input[0] not in tensors:
            continue  # an activation
        x = numpy_helper.to_array(tensors[n.input[0]])
        if n.op_type == "QuantizeLinear" and x.dtype.kind == "f" and n.input[1] in tensors:
            scale = numpy_helper.to_array(tensors[n.input[1]]).astype(np.float64)
            if scale.ndim == 1 and x.ndim > 1:  # per channel, along ``axis`` (ONNX's default 1)
                shape = [1] * x.ndim
                shape[next((a.i for a in n.attribute if a.name == "axis"), 1)] = -1
                scale = scale.reshape(shape)
            q = np.rint(x / scale)
        elif n.op_type == "DequantizeLinear" and x.dtype == np.int8:
            q = x.astype(np.int64)
        else:
            continue
        top = max(top or 0, int(np.abs(q).max()) if q.size else 0)
    return top
