"""Knowledge distillation from a zoo model: KITTI-format data -> convert -> the teacher out of the zoo -> the student
config trained under the teacher (components/distill) and, as the control, the same config trained alone for the
same iterations and seed (components/train) -> the three measured alike (evaluate, export with the parity gates
recorded, benchmark) -> the distilled student registered (its lineage names the teacher) -> a report with one row
per model and the accuracy-versus-latency Pareto front (components/optimize)."""
from kfp import dsl

from admlops.components.distill.component import distill as distill_step
from admlops.components.optimize.component import optimize_report, zoo_model
from admlops.components.register.component import register
from admlops.components.train.component import train
from admlops.pipelines import profiles
from admlops.pipelines.optimize import measuring


def build(profile: profiles.ClusterProfile | None = None):
    on = profiles.scheduler(profile)
    measure = measuring(on)

    @dsl.pipeline(name="distill", description="Distil a zoo model (the teacher) into a smaller config and compare the "
                  "student with the same config trained alone and with the teacher: accuracy, MACs, latency per deploy "
                  "target, the Pareto front; register the distilled student.")
    def distill(
        source: str,
        teacher: str,
        zoo_model_name: str,
        store: str = "",
        data_definition: str = "kitti-3class",
        data_val_fraction: float = 0.2,
        data_seed: int = 0,
        student_config: str = "rtmdet_tiny_kitti",
        train_max_iters: int = 0,
        train_batch_size: int = 0,
        train_seed: int = 0,
        export_deploy_config: str = "detection_onnxruntime_dynamic",
        deploy_backends: str = "onnxruntime:fp32,openvino:fp32,openvino:int8",
        deploy_calibration_images: int = 32,
        deploy_max_drop_float: float = 0.5,
        deploy_max_drop_int8: float = 1.5,
        deploy_gate_floor: float = -1.0,
        bench_batch_sizes: str = "1",
        bench_threads: str = "0",
        bench_warmup: int = 5,
        bench_max_images: int = 0,
        zoo_alias: str = "candidate",
    ):
        """``teacher``: the zoo model that guides (NAME@VERSION or NAME@ALIAS in ``store``, trained on the data's
        classes); ``source``: the KITTI-format data the student trains on and the three are measured on (a path or a
        dataset version in ``store``). The student (``student_config``, its ``distillation`` settings) and its
        control train ``train_max_iters`` iterations (0: the config's) with seed ``train_seed``. A failed gate is
        recorded, not fatal. ``zoo_model_name``: the distilled student's zoo name, aliased ``zoo_alias`` for the
        targets that passed."""
        data = profiles.converted(on, profile, kitti=source, store=store, definition=data_definition,
                                 val_fraction=data_val_fraction, seed=data_seed)
        guide = on(zoo_model(ref=teacher, store=store), "zoo-model")
        student = on(distill_step(dataset=data.outputs["dataset"], teacher=teacher, store=store,
                                  student_config=student_config, max_iters=train_max_iters,
                                  batch_size=train_batch_size, seed=train_seed),
                     "distill", gpu=True)
        alone = on(train(dataset=data.outputs["dataset"], config=student_config, max_iters=train_max_iters,
                         batch_size=train_batch_size, seed=train_seed, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, store=store),
                   "train", gpu=True)
        settings = dict(deploy_config=export_deploy_config, targets=deploy_backends,
                        calibration_images=deploy_calibration_images, max_drop_float=deploy_max_drop_float,
                        max_drop_int8=deploy_max_drop_int8, gate_floor=deploy_gate_floor, batch_sizes=bench_batch_sizes,
                        threads=bench_threads, warmup=bench_warmup, max_images=bench_max_images)
        measured = {}
        for name, task in (("teacher", guide), ("alone", alone), ("distilled", student)):
            measured[name] = measure(dataset=data.outputs["dataset"], model=task.outputs["model"], **settings)
            measured[name].set_display_name(f"measure-{name}")
        on(register(dataset=data.outputs["dataset"], model=student.outputs["model"],
                    report=measured["distilled"].outputs["report"], onnx_model=measured["distilled"].outputs["onnx_model"],
                    bench=measured["distilled"].outputs["results"], name=zoo_model_name, parent="", alias=zoo_alias,
                    store=store, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "register")
        on(optimize_report(dataset=data.outputs["dataset"], names="teacher,alone,distilled",
                           model_a=guide.outputs["model"], report_a=measured["teacher"].outputs["report"],
                           bench_a=measured["teacher"].outputs["results"], model_b=alone.outputs["model"],
                           report_b=measured["alone"].outputs["report"], bench_b=measured["alone"].outputs["results"],
                           model_c=student.outputs["model"], report_c=measured["distilled"].outputs["report"],
                           bench_c=measured["distilled"].outputs["results"]), "optimize-report")

    return distill


distill = build()
