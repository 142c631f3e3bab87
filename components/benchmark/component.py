"""KFP component: ONNX Runtime latency benchmark, shown as a Markdown table in the Kubeflow UI."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from admlops.images import IMAGES


@dsl.component(base_image=IMAGES["cpu"], install_kfp_package=False)
def benchmark(
    dataset: Input[Dataset],
    onnx_model: Input[Model],
    warmup: int,
    max_images: int,
    results: Output[Artifact],
    table: Output[Markdown],
):
    """Latency percentiles, throughput and peak RSS over the val images."""
    import shutil
    from pathlib import Path

    from admlops.components.benchmark.benchmark import benchmark as run

    result = run(dataset.path, onnx_model.path, results.path, warmup, max_images)
    shutil.copyfile(Path(results.path) / "benchmark.md", table.path)
    results.metadata.update({k: round(v, 3) for k, v in result["latency"].items()})
