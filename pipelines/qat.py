"""Quantization-aware training of a zoo model, for the int8 targets where post-training quantization loses more than
the gate allows: KITTI-format data -> convert -> the parent out of the zoo -> fine-tuned with int8 in the loop
(components/qat) -> both measured alike (evaluate, export with the parity gates recorded, benchmark: the parent's
int8 targets post-training quantized, the QAT model's built from its own Q/DQ graph) -> the QAT model registered (its
lineage names the parent; ``candidate`` only for the targets that passed) -> a report with one row per model, each
target's gate and latency, and the accuracy-versus-latency Pareto front (components/optimize). The QAT model is an
int8 model: its row's accuracy is its int8 accuracy (evaluate runs it quantized), the parent's its float one, and its
gates check that each runtime computes what it computed."""
from kfp import dsl

from admlops.components.optimize.component import optimize_report, zoo_model
from admlops.components.qat.component import qat as qat_step
from admlops.components.register.component import register
from admlops.pipelines import profiles
from admlops.pipelines.optimize import measuring


def build(profile: profiles.ClusterProfile | None = None):
    on = profiles.scheduler(profile)
    measure = measuring(on)

    @dsl.pipeline(name="qat", description="Fine-tune a zoo model with int8 in the loop and compare it with its "
                  "post-training-quantized parent: the int8 gates, accuracy, latency per deploy target, the Pareto "
                  "front; register the QAT model.")
    def qat(
        source: str,
        parent: str,
        zoo_model_name: str,
        store: str = "",
        data_definition: str = "kitti-3class",
        data_val_fraction: float = 0.2,
        data_seed: int = 0,
        qat_iters: int = -1,
        qat_seed: int = 0,
        export_deploy_config: str = "detection_onnxruntime_dynamic",
        deploy_backends: str = "onnxruntime:int8,openvino:int8",
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
        """``parent``: the zoo model (NAME@VERSION or NAME@ALIAS in ``store``); ``source``: the KITTI-format data the
        ranges calibrate on, the model fine-tunes on and both are measured on (a path or a dataset version in
        ``store``). ``qat_iters``: fine-tuning iterations (negative: the config's; 0: calibrated only).
        ``deploy_backends``: int8 targets (the QAT model has no other). A failed gate is recorded, not fatal.
        ``zoo_model_name``: the QAT model's zoo name, aliased ``zoo_alias`` for the targets that passed."""
        data = profiles.converted(on, profile, kitti=source, store=store, definition=data_definition,
                                 val_fraction=data_val_fraction, seed=data_seed)
        base = on(zoo_model(ref=parent, store=store), "zoo-model")
        tuned = on(qat_step(dataset=data.outputs["dataset"], parent=parent, store=store, iters=qat_iters, seed=qat_seed),
                   "qat", gpu=True)
        settings = dict(deploy_config=export_deploy_config, targets=deploy_backends,
                        calibration_images=deploy_calibration_images, max_drop_float=deploy_max_drop_float,
                        max_drop_int8=deploy_max_drop_int8, gate_floor=deploy_gate_floor, batch_sizes=bench_batch_sizes,
                        threads=bench_threads, warmup=bench_warmup, max_images=bench_max_images)
        before = measure(dataset=data.outputs["dataset"], model=base.outputs["model"], **settings).set_display_name(
            "measure-parent")
        after = measure(dataset=data.outputs["dataset"], model=tuned.outputs["model"], **settings).set_display_name(
            "measure-qat")
        on(register(dataset=data.outputs["dataset"], model=tuned.outputs["model"], report=after.outputs["report"],
                    onnx_model=after.outputs["onnx_model"], bench=after.outputs["results"], name=zoo_model_name,
                    parent="", alias=zoo_alias, store=store, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "register")
        on(optimize_report(dataset=data.outputs["dataset"], names="parent,qat", model_a=base.outputs["model"],
                           report_a=before.outputs["report"], bench_a=before.outputs["results"],
                           model_b=tuned.outputs["model"], report_b=after.outputs["report"],
                           bench_b=after.outputs["results"]), "optimize-report")

    return qat


qat = build()
