"""The loop for 3D (LiDAR) detection: infos -> train -> evaluate -> export -> benchmark -> register.

``build(profile)`` makes the pipeline for a cluster profile (as detection2d's: GPU train and evaluate, secrets,
/dev/shm); ``detection3d`` is the profile-free one that kfp.local runs and that is committed as detection3d.yaml.
The source goes in as it is (KITTI, or nuScenes with ``data_format=nuscenes``): the infos step writes the
mmdet3d data root the 3D configs read and publishes the source as the dataset version the zoo's lineage names.
"""
from kfp import dsl

from admlops.components.benchmark.component import benchmark
from admlops.components.evaluate.component import evaluate
from admlops.components.export.component import export
from admlops.components.convert.component import shard_plan
from admlops.components.infos.component import infos, infos_shard
from admlops.components.register.component import register
from admlops.components.train.component import train
from admlops.pipelines import profiles


def build(profile: profiles.ClusterProfile | None = None):
    """The detection3d pipeline, scheduled per ``profile`` (None: no Kubernetes settings)."""

    @dsl.pipeline(
        name="detection3d",
        description="KITTI-format LiDAR data to an evaluated, exported 3D detector in the model zoo: infos, train, "
        "evaluate, export, benchmark, register.",
    )
    def detection3d(
        source: str,
        store: str = "",
        data_format: str = "kitti",
        data_nuscenes_version: str = "v1.0-trainval",
        data_shards: int = 1,
        train_config: str = "pointpillars_kitti_cpu",
        train_max_iters: int = 0,
        train_batch_size: int = 0,
        train_seed: int = 0,
        train_cfg_options: str = "",
        train_init_from: str = "auto",
        export_deploy_config: str = "voxel-detection_onnxruntime_dynamic",
        deploy_backends: str = "onnxruntime:fp32,onnxruntime:int8",
        deploy_calibration_images: int = 32,
        deploy_max_drop_float: float = 1.0,
        deploy_max_drop_int8: float = 1.5,
        deploy_gates_fatal: bool = False,
        deploy_gate_floor: float = -1.0,
        bench_threads: str = "0",
        bench_warmup: int = 3,
        bench_max_images: int = 0,
        zoo_model_name: str = "pointpillars-kitti",
        zoo_parent: str = "",
        zoo_alias: str = "candidate",
    ):
        """``source`` is the data: a path or a dataset version ``NAME@VERSION`` in ``store`` (an
        ``s3://bucket/prefix``, a path, or empty for the default local store), KITTI object data (training/ with
        label_2, calib, velodyne; ImageSets/ train and val) or, with ``data_format=nuscenes``, a nuScenes root of
        ``data_nuscenes_version``. ``data_shards``: the infos step's shards (KITTI: frame ranges, one pod each, at
        most the profile's ``shard_parallelism`` at once, each retried alone on failure, merged into the data root
        one pod writes; nuScenes: sample ranges). ``train_config``: a name in configs/models or a path; ``train_max_iters`` /
        ``train_batch_size`` of 0 keep the config's values; ``train_cfg_options``: space-separated KEY=VALUE
        overrides as ``admlops train --cfg-options`` takes them; ``train_init_from``: a zoo model to start from
        (``auto``: the model that mined ``source``, else from scratch; empty: from scratch). Evaluate logs KITTI's AP40 at moderate difficulty
        per class and their means as metrics, with every difficulty and IoU threshold in its Markdown report. A KITTI
        model is exported (mmdeploy VoxelDetection -> ``deploy_backends``: ONNX Runtime fp32 and int8, the int8
        calibrated on ``deploy_calibration_images`` train scans; each gated on the class-mean 3D AP40 moderate: at most
        ``deploy_max_drop_float`` points below PyTorch for fp32, ``deploy_max_drop_int8`` for int8; a failed target is
        recorded, not benchmarked and blocked from ``zoo_alias`` unless ``deploy_gates_fatal`` makes it fail export;
        below ``deploy_gate_floor``, negative: 1.0 AP point, the gates are not meaningful: no alias)
        and benchmarked (voxelization, network, post-processing timed apart; ``bench_max_images`` 0 = every val scan)
        before register; a nuScenes model is registered without an export (the 3D export takes KITTI voxel detectors)."""
        on = profiles.scheduler(profile)

        plan = on(shard_plan(data_format=data_format, shards=data_shards), "infos-plan")
        data = profiles.sharded(on, profile, plan, infos_shard, infos, "infos", data_shards,
                                dict(source=source, data_format=data_format, nuscenes_version=data_nuscenes_version,
                                     store=store))
        # Training runs in the step's pod (with the profile's GPU); a TrainJob (profile.train_nodes) is detection2d's.
        model = on(train(dataset=data.outputs["dataset"], config=train_config, max_iters=train_max_iters,
                         batch_size=train_batch_size, seed=train_seed, cfg_options=train_cfg_options,
                         run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, init_from=train_init_from, store=store),
                   "train", gpu=True)
        scores = on(evaluate(dataset=data.outputs["dataset"], model=model.outputs["model"]), "evaluate", gpu=True)
        def register_step(**deployed):
            return on(register(dataset=data.outputs["dataset"], model=model.outputs["model"], report=scores.outputs["report"],
                               name=zoo_model_name, parent=zoo_parent, alias=zoo_alias, store=store,
                               run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, **deployed), "register")

        with dsl.If(data_format == "kitti", name="kitti-export"):
            onnx = on(export(dataset=data.outputs["dataset"], model=model.outputs["model"],
                             pytorch_report=scores.outputs["report"], deploy_config=export_deploy_config,
                             targets=deploy_backends, calibration_images=deploy_calibration_images,
                             max_drop_float=deploy_max_drop_float, max_drop_int8=deploy_max_drop_int8,
                         enforce_gates=deploy_gates_fatal, gate_floor=deploy_gate_floor), "export")
            bench = on(benchmark(dataset=data.outputs["dataset"], onnx_model=onnx.outputs["onnx_model"],
                                 model=model.outputs["model"], backends=deploy_backends, batch_sizes="1",
                                 threads=bench_threads, warmup=bench_warmup, max_images=bench_max_images), "benchmark")
            register_step(onnx_model=onnx.outputs["onnx_model"], bench=bench.outputs["results"])
        with dsl.Else(name="no-export"):
            register_step()

    return detection3d


detection3d = build()


def preflight(params: dict) -> None:
    """Before a local run starts any step: the training config exists and takes ``train_cfg_options`` (a UsageError
    naming the name or option, exit 2), a KITTI model's ``deploy_backends`` are 3D deploy targets (exit 2), and a
    local KITTI source has the folders 3D detection reads (an InputError naming the folder, exit 3). ``params``: the
    run's parameters with the pipeline's defaults filled in."""
    from mmengine.config import Config

    from admlops.backends import parse_targets
    from admlops.components.infos.infos import check_source
    from admlops.configs import resolve
    from admlops.mmconfig import merge_cfg_options, parse_cfg_options
    from admlops.tasks import task_of

    cfg = Config.fromfile(str(resolve("models", params["train_config"])))
    merge_cfg_options(cfg, parse_cfg_options(params["train_cfg_options"]))
    if params["data_format"] == "kitti":
        task_of(cfg).check_targets(parse_targets(params["deploy_backends"]))
    check_source(params["source"], params["data_format"])
