"""KFP component: the deploy benchmark sweep (backends x precisions x batch sizes x threads, and PyTorch eager),
shown in the Kubeflow UI as a Markdown table and an HTML report with plots."""
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("benchmark"), install_kfp_package=False)
def benchmark(
    dataset: Input[Dataset],
    onnx_model: Input[Model],
    model: Input[Model],
    backends: str,
    batch_sizes: str,
    threads: str,
    warmup: int,
    max_images: int,
    results: Output[Artifact],
    table: Output[Markdown],
    html: Output[HTML],
    engines: Input[Model] = None,
):
    """Latency percentiles, throughput, load time, artifact size and memory per backend x precision x batch x threads,
    beside PyTorch eager on the same images. ``backends``: comma-separated names or name:precision pairs;
    ``batch_sizes``, ``threads``: comma-separated integers (threads 0 = the runtime's default); ``engines``: export-trt's
    output, whose failed gates leave those TensorRT targets untimed."""
    import shutil
    from pathlib import Path

    from admlops.components.benchmark.benchmark import parse_ints, sweep

    result = sweep(dataset.path, onnx_model.path, model.path, results.path, backends=backends.split(","),
                   batch_sizes=parse_ints(batch_sizes, "batch_sizes"), threads=parse_ints(threads, "threads"),
                   warmup=warmup, max_images=max_images, engines_dir=engines.path if engines else None)
    shutil.copyfile(Path(results.path) / "benchmark.md", table.path)
    shutil.copyfile(Path(results.path) / "report.html", html.path)
    results.metadata.update({k: v for k, v in result["summary"].items() if v is not None})
