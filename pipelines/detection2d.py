"""The closed loop for 2D detection: convert -> train -> evaluate -> export -> benchmark -> register.

``build(profile)`` makes the pipeline for a cluster profile (configs/cluster/*.yaml: GPU steps, secrets,
/dev/shm, applied with kfp-kubernetes); ``detection2d`` is the profile-free one that kfp.local runs and
that is committed as detection2d.yaml."""
from kfp import dsl

from admlops.components.analyze.component import analyze
from admlops.components.benchmark.component import benchmark
from admlops.components.evaluate.component import evaluate
from admlops.components.export.component import export
from admlops.components.export_trt.component import export_trt
from admlops.components.register.component import register
from admlops.components.train.component import train
from admlops.components.train_distributed.component import train_distributed
from admlops import images
from admlops.pipelines import profiles


def build(profile: profiles.ClusterProfile | None = None):
    """The detection2d pipeline, scheduled per ``profile`` (None: no Kubernetes settings)."""

    @dsl.pipeline(
        name="detection2d",
        description="KITTI-format data to a benchmarked ONNX detector in the model zoo: "
        "convert, analyze, train, evaluate, export, benchmark, register.",
    )
    def detection2d(
        source: str,
        store: str = "",
        data_definition: str = "kitti-3class",
        data_val_fraction: float = 0.2,
        data_seed: int = 0,
        data_shards: int = 1,
        train_config: str = "rtmdet_tiny_kitti",
        train_max_iters: int = 0,
        train_batch_size: int = 0,
        train_seed: int = 0,
        train_init_from: str = "auto",
        export_deploy_config: str = "detection_onnxruntime_dynamic",
        deploy_backends: str = "onnxruntime:fp32,openvino:fp32,openvino:int8",
        deploy_calibration_images: int = 32,
        deploy_max_drop_float: float = 0.5,
        deploy_max_drop_int8: float = 1.5,
        deploy_gates_fatal: bool = False,
        deploy_gate_floor: float = -1.0,
        deploy_trt_precisions: str = "fp16,int8",
        bench_batch_sizes: str = "1,4,8",
        bench_trt_backends: str = "tensorrt:fp16,tensorrt:int8",
        bench_threads: str = "0",
        bench_warmup: int = 5,
        bench_max_images: int = 0,
        zoo_model_name: str = "rtmdet-tiny-kitti",
        zoo_parent: str = "",
        zoo_alias: str = "candidate",
    ):
        """``source`` is the KITTI-format data: a path or a dataset version ``NAME@VERSION`` in ``store`` (an ``s3://bucket/prefix``,
        a path, or empty for the default local store). ``data_shards``: the conversion's shards (frame ranges, one pod
        each, at most the profile's ``shard_parallelism`` at once, each retried alone on failure), merged into the
        dataset one pod writes. ``train_max_iters``/``train_batch_size`` of 0 keep the
        config's values; ``train_init_from``: the model training starts from, a zoo model
        ``NAME@VERSION``/``NAME@ALIAS`` in ``store`` (``auto``: the model that mined ``source``, when it is an
        iterate round's merged version, else from scratch; empty: from scratch); ``bench_max_images`` 0 = all val images. ``deploy_backends``: the deploy targets as
        comma-separated ``backend:precision`` pairs, each built from the exported ONNX and gated against PyTorch's
        mAP@0.5 (allowed drops in points: ``deploy_max_drop_float`` for fp32/fp16, ``deploy_max_drop_int8``); a
        target over its allowance is recorded as failed, is not benchmarked and is blocked from ``zoo_alias``, while
        the run goes on with the targets that passed (``deploy_gates_fatal``: any failed gate fails export, as a CI
        promotion run wants). Below ``deploy_gate_floor`` (PyTorch mAP@0.5; negative: 0.05) the gates are not
        meaningful and the model is registered without an alias. With a GPU profile, ``export-trt`` builds TensorRT engines
        (``deploy_trt_precisions``), gated the same way (a failed engine is recorded in the zoo and blocked from the alias,
        not timed), and a second benchmark times the engines that passed on the GPU."""
        on = profiles.scheduler(profile)
        data = profiles.converted(on, profile, data_shards, kitti=source, store=store, definition=data_definition,
                                  val_fraction=data_val_fraction, seed=data_seed)
        on(analyze(dataset=data.outputs["dataset"]), "analyze")
        if profile and profile.train_nodes:  # the TrainJob's nodes get the GPUs; this step only orchestrates
            model = on(train_distributed(
                dataset=data.outputs["dataset"], config=train_config, max_iters=train_max_iters, batch_size=train_batch_size,
                seed=train_seed, image=images.image(images.TRAINJOB_NODE_IMAGE), num_nodes=profile.train_nodes,
                procs_per_node=profile.train_procs_per_node, gpus_per_node=profile.train_procs_per_node, namespace="",
                s3_secret=profile.s3_secret, timeout_s=profile.train_timeout_s, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                init_from=train_init_from, store=store,
            ), "train-distributed")
        else:
            model = on(train(dataset=data.outputs["dataset"], config=train_config, max_iters=train_max_iters,
                             batch_size=train_batch_size, seed=train_seed, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                             init_from=train_init_from, store=store),
                       "train", gpu=True)
        scores = on(evaluate(dataset=data.outputs["dataset"], model=model.outputs["model"]), "evaluate", gpu=True)
        onnx = on(export(dataset=data.outputs["dataset"], model=model.outputs["model"], pytorch_report=scores.outputs["report"],
                         deploy_config=export_deploy_config, targets=deploy_backends,
                         calibration_images=deploy_calibration_images, max_drop_float=deploy_max_drop_float,
                         max_drop_int8=deploy_max_drop_int8,
                         enforce_gates=deploy_gates_fatal, gate_floor=deploy_gate_floor), "export")
        bench = on(benchmark(dataset=data.outputs["dataset"], onnx_model=onnx.outputs["onnx_model"], model=model.outputs["model"],
                             backends=deploy_backends, batch_sizes=bench_batch_sizes, threads=bench_threads,
                             warmup=bench_warmup, max_images=bench_max_images), "benchmark")
        trt = None
        if profile and profile.gpus:  # TensorRT engines on the deploy image, gated like export's targets
            trt = on(export_trt(dataset=data.outputs["dataset"], onnx_model=onnx.outputs["onnx_model"],
                                precisions=deploy_trt_precisions, calibration_images=deploy_calibration_images,
                                max_drop_float=deploy_max_drop_float, max_drop_int8=deploy_max_drop_int8,
                                enforce_gates=deploy_gates_fatal),
                     "export-trt", gpu=True)
            on(benchmark(dataset=data.outputs["dataset"], onnx_model=onnx.outputs["onnx_model"], model=model.outputs["model"],
                         backends=bench_trt_backends, engines=trt.outputs["engines"],
                         batch_sizes=bench_batch_sizes, threads=bench_threads, warmup=bench_warmup,
                         max_images=bench_max_images), "benchmark-trt", gpu=True)
        on(register(dataset=data.outputs["dataset"], model=model.outputs["model"], report=scores.outputs["report"],
                    onnx_model=onnx.outputs["onnx_model"], bench=bench.outputs["results"], name=zoo_model_name,
                    parent=zoo_parent, alias=zoo_alias, store=store, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                    **({"engines": trt.outputs["engines"]} if trt else {})),
           "register")

    return detection2d


detection2d = build()
