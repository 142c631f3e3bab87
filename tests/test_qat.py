"""Quantization-aware training (components/qat, admlops/mmext/quantized.py): the fake quantization is int8's
arithmetic and trains through it; the exported Q/DQ graph computes what training simulated, under ONNX Runtime and
OpenVINO; int8 targets take such a graph as it is; the qat pipeline fine-tunes a zoo model, measures it beside its
post-training-quantized parent and registers it; bad input is named and nothing is written."""
import json

import numpy as np
import pytest

from tests.conftest import admlops


def toy(seed=0, weight_bits=8):
    """Two fake-quantized convolutions with a BatchNorm and SiLU between them, ranges calibrated on random inputs."""
    import torch

    from admlops.mmext.quantized import calibrate, quantize

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.SiLU(),
                              torch.nn.Conv2d(8, 4, 3, padding=1))
    net[1].running_var.uniform_(0.5, 2)
    net[1].running_mean.uniform_(-0.5, 0.5)
    assert len(quantize(net, weight_bits=weight_bits)) == 2
    batches = [torch.randn(2, 3, 16, 16) for _ in range(4)]
    calibrate(net, lambda m, b: m(b), batches, percentile=100)
    return net.eval()


def test_fake_quantization_is_int8_arithmetic_and_trains_through_it():
    import torch

    from admlops.mmext.quantized import float_convs

    net = toy()
    conv = net[0]
    x = torch.randn(1, 3, 16, 16) * 2
    with torch.no_grad():
        got = conv(x)  # eval mode computes int8 too: the model is an int8 model wherever it runs
        s = conv.act_amax / 127
        xq = torch.clamp(torch.round(x / s), -128, 127) * s
        ws = conv.weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
        wq = torch.clamp(torch.round(conv.weight / ws), -128, 127) * ws
        torch.testing.assert_close(got, torch.nn.functional.conv2d(xq, wq, conv.bias, padding=1), atol=1e-5, rtol=1e-5)
        with float_convs():
            float_out = conv(x)
        torch.testing.assert_close(float_out, torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))
    assert (got - float_out).abs().max() > 1e-3, "the control: int8 differs from float"
    # training: the straight-through gradient flows to inputs inside the range and stops at the clipped ones
    conv.train()
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, 4, 4], x[0, 0, 8, 8] = float(conv.act_amax) * 0.5, float(conv.act_amax) * 3
    x.requires_grad_(True)
    conv(x).sum().backward()
    assert x.grad[0, 0, 4, 4] != 0 and x.grad[0, 0, 8, 8] == 0
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_calibration_takes_the_percentile_of_each_inputs_magnitude():
    import torch

    from admlops.mmext.quantized import calibrate, quantize

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1))
    quantize(net)
    x = torch.arange(1, 10001, dtype=torch.float32).reshape(1, 1, 100, 100)
    assert calibrate(net, lambda m, b: m(b), [x, -2 * x], percentile=100) == {"0": pytest.approx(15000)}
    assert calibrate(net, lambda m, b: m(b), [x], percentile=99)["0"] == pytest.approx(9900)
    assert float(net[0].act_amax) == pytest.approx(9900)
    with pytest.raises(ValueError, match="keep_float names nope"):
        quantize(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), ["nope"])


def export_toy(net, path):
    import torch

    with torch.no_grad():
        torch.onnx.export(net, torch.randn(1, 3, 16, 16), str(path), opset_version=13, dynamo=False,
                          input_names=["input"], output_names=["out"])
    return path


def test_the_exported_qdq_graph_computes_what_training_simulated(tmp_path):
    """Scales are constants, zero points int8 0 (what TensorRT's explicit quantization takes); ONNX Runtime and
    OpenVINO compute the simulated int8 output, which differs from the float one by far more than they do."""
    import onnx
    import openvino as ov
    import torch

    from admlops.backends.graphs import carried_qdq
    from admlops.backends.onnxruntime import session
    from admlops.cpu import int8_kernels, saturates
    from admlops.mmext.quantized import float_convs

    net = toy()
    graph = export_toy(net, tmp_path / "int8.onnx")
    ops = [n.op_type for n in onnx.load(str(graph)).graph.node]
    assert ops.count("QuantizeLinear") == 4 and ops.count("DequantizeLinear") == 4
    assert not {"ReduceMax", "Abs", "Div"} & set(ops), "weight scales are folded into constants"
    carried = carried_qdq(graph)
    assert carried["signed_symmetric"] and carried["q_nodes"] == 4
    x = torch.randn(1, 3, 16, 16) * 1.5
    with torch.no_grad():
        want = net(x).numpy()
        with float_convs():
            float_out = net(x).numpy()
    got = session(graph, 1).run(None, {"input": x.numpy()})[0]
    compiled = ov.Core().compile_model(ov.convert_model(str(graph)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got_ov = compiled(x.numpy())[0]
    step = float(net[3].act_amax) / 127  # one level of the second convolution's input
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(float_out - want).max() > 20 * np.abs(got - want).max(), "the control: float is another output"
    assert got_ov.shape == want.shape and np.isfinite(got_ov).all()
    # OpenVINO computes in int8 kernels: exact where they sum in 32 bits (VNNI, AMX); without VNNI the 16-bit pair
    # sums can saturate on a full 8-bit weight (admlops/cpu.py: what a QAT graph's load warns of), so the exact
    # comparison is made only where it is defined
    if not saturates(int8_kernels()):
        assert np.abs(got_ov - want).max() < 0.05 * step * np.abs(net[3].weight.detach().numpy()).sum(axis=(1, 2, 3)).max()


OV_RUN = """
import sys, numpy as np, openvino as ov
x = np.load(sys.argv[1])
for graph in sys.argv[2:]:
    compiled = ov.Core().compile_model(ov.convert_model(graph), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.save(graph + ".out.npy", compiled(x)[0])
"""


def test_seven_bit_weights_keep_openvinos_int8_exact_on_kernels_without_vnni(tmp_path):
    """OpenVINO's int8 kernels held to AVX2 (oneDNN's ``ONEDNN_MAX_CPU_ISA``, what a CPU without VNNI runs; on such
    a CPU the setting changes nothing): with QAT's 7-bit weights (``weight_bits=7``, chosen for a deploy CPU without
    VNNI) they compute what PyTorch's fake quantization computed; with full 8-bit weights their 16-bit pair sums
    saturate and the output moves by a third of its range (the control, measured 0.52 of 1.55). The graphs say
    which they carry (``carried_qdq``'s weight_bits), and OpenVINO's build records the overflow fix it implies."""
    import os
    import subprocess
    import sys

    import torch

    from admlops.backends import get_backend
    from admlops.backends.graphs import carried_qdq

    torch.manual_seed(1)
    x = torch.randn(1, 3, 16, 16)
    np.save(tmp_path / "x.npy", x.numpy())
    nets, graphs = {}, {}
    for bits in (8, 7):
        nets[bits] = toy(weight_bits=bits)
        graphs[bits] = export_toy(nets[bits], tmp_path / f"int8-{bits}bit.onnx")
        assert carried_qdq(graphs[bits])["weight_bits"] == bits
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    subprocess.run([sys.executable, "-c", OV_RUN, str(tmp_path / "x.npy"), *map(str, graphs.values())], env=env,
                   check=True, timeout=300)
    err = {}
    for bits, net in nets.items():
        with torch.no_grad():
            want = net(x).numpy()
        err[bits] = float(np.abs(np.load(f"{graphs[bits]}.out.npy") - want).max())
    assert err[7] < 1e-4, err
    assert err[8] > 1000 * max(err[7], 1e-6), err  # the control: 8-bit weights saturate there
    fixed = get_backend("openvino").build(graphs[7], tmp_path / "ov7", "int8").report["quantization"]["cpu"]
    full = get_backend("openvino").build(graphs[8], tmp_path / "ov8", "int8").report["quantization"]["cpu"]
    assert fixed["overflow_fix"] and not full["overflow_fix"]


def test_int8_targets_take_a_carried_graph_as_it_is_and_tensorrt_refuses_unsigned_ones(tmp_path):
    from admlops.backends import get_backend
    from admlops.backends.base import Calibration
    from admlops.backends.graphs import carried_qdq, quantize_qdq
    from admlops.backends.tensorrt import precision_graph
    from admlops.errors import InputError, UsageError
    from admlops.mmext.quantized import dequantize

    graph = export_toy(toy(), tmp_path / "int8.onnx")
    ort = get_backend("onnxruntime")
    report = ort.build(graph, tmp_path / "ort-int8", "int8").report  # no calibration: the graph's own Q/DQ
    assert report["calibration"] is None and report["quantization"]["q_nodes"] == 4
    assert (tmp_path / "ort-int8" / "model.onnx").read_bytes() == graph.read_bytes()
    ov_report = get_backend("openvino").build(graph, tmp_path / "ov-int8", "int8").report
    assert ov_report["calibration"] is None and "nncf" not in ov_report["quantization"]["tool"]
    with pytest.raises(UsageError, match="carries its own int8 quantization .* build it as int8, not fp32"):
        ort.build(graph, tmp_path / "ort-fp32", "fp32")
    assert precision_graph(graph, tmp_path, "int8", None, None)[0] == graph
    # the control: an ONNX Runtime-style graph (uint8 activations) is one TensorRT cannot build
    plain = export_toy(dequantize(toy()), tmp_path / "fp32.onnx")
    assert carried_qdq(plain) is None
    rng = np.random.default_rng(0)
    calibration = Calibration("random", [rng.normal(size=(1, 3, 16, 16)).astype(np.float32) for _ in range(2)])
    quantize_qdq(plain, tmp_path / "u8.onnx", calibration, tmp_path)
    assert not carried_qdq(tmp_path / "u8.onnx")["signed_symmetric"]
    with pytest.raises(InputError, match="u8.onnx.*TensorRT cannot build: .*signed symmetric int8 only"):
        precision_graph(tmp_path / "u8.onnx", tmp_path, "int8", None, None)


def test_qat_refuses_bad_settings_a_missing_parent_and_a_model_without_an_int8_target(learned_model, tmp_path):
    from admlops.errors import UsageError
    from admlops.tasks import get_task

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.pth").write_bytes((learned_model.model / "model.pth").read_bytes())
    (model / "config.py").write_text((learned_model.model / "config.py").read_text() + "\nqat = dict(percentile=20)\n")
    res = admlops("qat", model, learned_model.dataset, tmp_path / "out", check=False)
    assert res.returncode == 2 and "qat percentile 20: expected a value in (50, 100]" in res.stderr
    (model / "config.py").write_text((learned_model.model / "config.py").read_text() + "\nqat = dict(int8_cpu='sse9')\n")
    res = admlops("qat", model, learned_model.dataset, tmp_path / "out", check=False)
    assert res.returncode == 2 and "config.py: qat unknown int8 CPU kernel class 'sse9'" in res.stderr
    res = admlops("qat", "nope@v1", learned_model.dataset, tmp_path / "out", "--store", tmp_path / "store", check=False)
    assert res.returncode == 2 and "nope" in res.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="quantization-aware training of a .* is not supported"):
        get_task("nuscenes-detection").qat_forward()  # no deployed graph: no int8 target to train for


def test_the_qat_pipeline_fine_tunes_with_int8_in_the_loop_and_measures_it_beside_its_parent(learned_model, small_val, tmp_path):
    """A learned RTMDet-tiny in the zoo through the qat pipeline run locally (8 iterations): the parent's ONNX
    Runtime int8 is post-training quantized, the QAT model's built from its own Q/DQ graph (OpenVINO's build of
    such a graph is tested above); both gated and benchmarked; the QAT model registered under its parent."""
    from admlops import catalog, zoo
    from admlops.backends.graphs import carried_qdq
    from admlops.objectstore import open_store
    from admlops.pipelines.local import run_local

    store = tmp_path / "store"
    parent = zoo.publish(open_store(str(store)), "det", learned_model.model, zoo.lineage(None, None))
    run = run_local("qat", {"source": str(small_val.kitti), "parent": f"det@{parent.version}",
                            "zoo_model_name": "det-int8", "qat_iters": 8,
                            "deploy_backends": "onnxruntime:int8", "deploy_calibration_images": 8,
                            "bench_max_images": 2, "bench_warmup": 1}, store)
    [record_file] = list(run.rglob("qat.json"))
    record = json.loads(record_file.read_text())
    assert record["parent"] == f"det@{parent.version}" and record["finetune"]["iterations"] == 8
    assert record["quantized"] > 50 and all(v > 0 for v in record["act_amax"].values())
    gates = {}
    for path in run.rglob("gates.json"):
        kind = "qat" if carried_qdq(path.parent / "end2end.onnx") else "parent"
        gates[kind] = {(g["backend"], g["precision"]): g for g in json.loads(path.read_text())["gates"]}
        build = json.loads((path.parent / "onnxruntime-int8" / "build.json").read_text())
        assert (build["calibration"] is None) == (kind == "qat"), "the QAT model's int8 needs no calibration"
    assert set(gates) == {"parent", "qat"}
    # ONNX Runtime computes what the int8 PyTorch model computed (the Q/DQ arithmetic in fp32 on any CPU)
    assert abs(gates["qat"][("onnxruntime", "int8")]["drop_points"]) <= 0.5, gates["qat"]
    rows = {r["name"]: r for r in json.loads((run / "optimize-report" / "table").read_text())["rows"]}
    assert list(rows) == ["parent", "qat"] and rows["qat"]["macs"] == rows["parent"]["macs"]
    # the QAT model's accuracy is its int8 accuracy; 8 iterations keep it near the parent's float one (measured +1.3)
    assert rows["qat"]["value"] >= rows["parent"]["value"] - 0.05, rows
    assert rows["qat"]["gates"]["onnxruntime int8"]["passed"]
    report = (run / "optimize-report" / "report").read_text()
    assert "onnxruntime int8 p50 ms" in report
    res = admlops("export", learned_model.dataset, record_file.parent, tmp_path / "fp32", "--targets",
                  "onnxruntime:fp32", check=False)
    assert res.returncode == 2 and "a quantization-aware trained model deploys in int8" in res.stderr
    assert not (tmp_path / "fp32").exists()
    registered = json.loads((run / "register" / "zoo_model").read_text())
    info = catalog.show(open_store(str(store)), "models", "det-int8", registered["version"]).info
    assert info["lineage"]["parent_model"] == f"det@{parent.version}"
    assert "onnxruntime:int8" in registered["deployable_targets"]


def test_the_report_names_a_target_that_failed_its_gate_where_its_latency_would_be(tmp_path, monkeypatch):
    """Two variants measured alike: the parent's post-training int8 failed its gate (not timed), the QAT model's
    passed; the report's cell says so, with the drop and the allowance, and the table records both gates."""
    from admlops.components.optimize import report
    from admlops.components.prune import prune

    monkeypatch.setattr(prune, "model_size", lambda model, dataset: {"macs": 4_000_000_000, "params": 4_800_000})
    variants = []
    for name, value, failed in (("parent", 0.71, True), ("qat", 0.735, False)):
        root = tmp_path / name
        (root / "eval").mkdir(parents=True)
        (root / "bench").mkdir()
        (root / "eval" / "metrics.json").write_text(json.dumps({"task": "image-detection", "bbox": {"bbox_mAP_50": value}}))
        rows = [{"runtime": "pytorch", "precision": "fp32", "batch": 1, "threads": 0, "artifact_bytes": 1,
                 "latency": {"p50_ms": 50.0}}]
        gates = [{"backend": "onnxruntime", "precision": "int8", "drop_points": 2.3, "allowed_points": 1.5,
                  "passed": False}] if failed else []
        if not failed:
            rows.append({"runtime": "onnxruntime", "precision": "int8", "batch": 1, "threads": 0,
                         "artifact_bytes": 5_000_000, "latency": {"p50_ms": 40.0}})
        (root / "bench" / "benchmark.json").write_text(json.dumps({"rows": rows, "not_deployable": gates}))
        variants.append({"name": name, "model": root, "report": root / "eval", "bench": root / "bench"})
    result = report.write(variants, tmp_path, tmp_path / "out")
    by_name = {r["name"]: r for r in result["rows"]}
    assert by_name["parent"]["gates"]["onnxruntime int8"] == {"passed": False, "drop_points": 2.3, "allowed_points": 1.5}
    assert by_name["qat"]["gates"]["onnxruntime int8"] == {"passed": True}
    page = (tmp_path / "out" / "report.html").read_text()
    assert "gate failed (drop +2.30, allowed 1.50)" in page and "<td>40.0</td>" in page
    # the parameters (M), MACs (G) and artifact size (MB) columns; the plot's axis is PyTorch, where both were timed
    assert "<td>qat</td><td>4.80</td><td>4.00</td><td>0.735</td>" in page and "<td>5.0</td>" in page
    assert result["target"] == "pytorch fp32" and [r["pareto"] for r in result["rows"]] == [False, True]


def test_the_pareto_front_on_known_points():
    """(latency, accuracy): a point is on the front unless another is faster and at least as accurate, or as fast
    and more accurate; ties keep both."""
    from admlops.components.optimize.report import pareto

    points = [(10.0, 0.70), (20.0, 0.80), (15.0, 0.65), (20.0, 0.75), (30.0, 0.80), (5.0, 0.50), (5.0, 0.50)]
    assert pareto(points) == [True, True, False, False, False, True, True]
