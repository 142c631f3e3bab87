"""The closed loop for 2D detection: convert -> train -> evaluate -> export -> benchmark."""
from kfp import dsl

from admlops.components.analyze.component import analyze
from admlops.components.benchmark.component import benchmark
from admlops.components.convert.component import convert
from admlops.components.evaluate.component import evaluate
from admlops.components.export.component import export
from admlops.components.register.component import register
from admlops.components.train.component import train


@dsl.pipeline(
    name="detection2d",
    description="KITTI-format data to a benchmarked ONNX detector in the model zoo: "
    "convert, analyze, train, evaluate, export, benchmark, register.",
)
def detection2d(
    kitti_root: str,
    store: str = "",
    data_definition: str = "kitti-3class",
    data_val_fraction: float = 0.2,
    data_seed: int = 0,
    train_config: str = "rtmdet_tiny_kitti",
    train_max_iters: int = 0,
    train_batch_size: int = 0,
    train_seed: int = 0,
    export_deploy_config: str = "detection_onnxruntime_dynamic",
    bench_warmup: int = 5,
    bench_max_images: int = 0,
    zoo_model_name: str = "rtmdet-tiny-kitti",
    zoo_parent: str = "",
    zoo_alias: str = "candidate",
):
    """``kitti_root`` is a path or a dataset version ``NAME@VERSION`` in ``store`` (an ``s3://bucket/prefix``,
    a path, or empty for the default local store). ``train_max_iters``/``train_batch_size`` of 0 keep the
    config's values; ``bench_max_images`` 0 = all val images."""
    data = convert(kitti=kitti_root, store=store, definition=data_definition, val_fraction=data_val_fraction, seed=data_seed)
    data.set_display_name("convert")
    analyze(dataset=data.outputs["dataset"]).set_display_name("analyze")
    model = train(
        dataset=data.outputs["dataset"], config=train_config, max_iters=train_max_iters,
        batch_size=train_batch_size, seed=train_seed,
    )
    model.set_display_name("train")
    scores = evaluate(dataset=data.outputs["dataset"], model=model.outputs["model"])
    scores.set_display_name("evaluate")
    onnx = export(
        dataset=data.outputs["dataset"], model=model.outputs["model"], pytorch_report=scores.outputs["report"],
        deploy_config=export_deploy_config,
    )
    onnx.set_display_name("export")
    bench = benchmark(
        dataset=data.outputs["dataset"], onnx_model=onnx.outputs["onnx_model"], warmup=bench_warmup,
        max_images=bench_max_images,
    )
    bench.set_display_name("benchmark")
    zoo = register(
        dataset=data.outputs["dataset"], model=model.outputs["model"], report=scores.outputs["report"],
        onnx_model=onnx.outputs["onnx_model"], bench=bench.outputs["results"], name=zoo_model_name, parent=zoo_parent,
        alias=zoo_alias, store=store, run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    )
    zoo.set_display_name("register")
