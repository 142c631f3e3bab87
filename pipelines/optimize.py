"""Smaller, faster models from a zoo model: KITTI-format data -> convert -> the parent out of the zoo -> pruned and
fine-tuned (components/prune) -> both evaluated, exported to the deploy targets with their parity gates and
benchmarked on the same data -> the pruned model registered (its lineage names the parent) -> a report with one row
per variant and the accuracy-versus-latency Pareto front (components/optimize)."""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model

from admlops.components.benchmark.component import benchmark
from admlops.components.evaluate.component import evaluate
from admlops.components.export.component import export
from admlops.components.optimize.component import optimize_report, zoo_model
from admlops.components.prune.component import prune
from admlops.components.register.component import register
from admlops.pipelines import profiles


def measuring(on):
    """The ``measure`` sub-pipeline with the profile's scheduling ``on``: one model evaluated, exported to the deploy
    targets with the parity gates (recorded, not fatal) and benchmarked."""

    @dsl.pipeline(name="measure", description="evaluate, export with the parity gates (recorded, not fatal), benchmark")
    def measure(dataset: Input[Dataset], model: Input[Model], deploy_config: str, targets: str, calibration_images: int,
                max_drop_float: float, max_drop_int8: float, gate_floor: float, batch_sizes: str, threads: str,
                warmup: int, max_images: int) -> NamedTuple("Measured", report=Artifact, onnx_model=Model, results=Artifact):
        # one sub-DAG per model: kfp.local gives each its own task directories (two tasks of one component at the
        # same level would share them)
        scores = on(evaluate(dataset=dataset, model=model), "evaluate", gpu=True)
        onnx = on(export(dataset=dataset, model=model, pytorch_report=scores.outputs["report"], deploy_config=deploy_config,
                         targets=targets, calibration_images=calibration_images, max_drop_float=max_drop_float,
                         max_drop_int8=max_drop_int8, enforce_gates=False, gate_floor=gate_floor), "export")
        bench = on(benchmark(dataset=dataset, onnx_model=onnx.outputs["onnx_model"], model=model, backends=targets,
                             batch_sizes=batch_sizes, threads=threads, warmup=warmup, max_images=max_images), "benchmark")
        Measured = NamedTuple("Measured", report=Artifact, onnx_model=Model, results=Artifact)
        return Measured(report=scores.outputs["report"], onnx_model=onnx.outputs["onnx_model"],
                        results=bench.outputs["results"])

    return measure


def build(profile: profiles.ClusterProfile | None = None):
    on = profiles.scheduler(profile)

    measure = measuring(on)

    @dsl.pipeline(name="optimize", description="Prune a zoo model, fine-tune it, and compare it with its parent: "
                  "accuracy, MACs, latency per deploy target, the Pareto front; register the pruned model.")
    def optimize(
        source: str,
        parent: str,
        zoo_model_name: str,
        store: str = "",
        data_definition: str = "kitti-3class",
        data_val_fraction: float = 0.2,
        data_seed: int = 0,
        prune_flops_reduction: float = 0.4,
        prune_finetune_iters: int = -1,
        prune_seed: int = 0,
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
        """``parent``: the zoo model to optimise (NAME@VERSION or NAME@ALIAS in ``store``); ``source``: the KITTI-format
        data both are measured on and the pruned model is fine-tuned on (a path or a dataset version in ``store``).
        Pruning removes ``prune_flops_reduction`` of the parent's MACs (the config's ``pruning`` settings) and
        fine-tunes ``prune_finetune_iters`` iterations (negative: the config's; 0: none). Both models go through the
        same export gates and benchmark; a failed gate is recorded, not fatal. ``zoo_model_name``: the pruned
        model's zoo name, aliased ``zoo_alias`` for the targets that passed."""
        data = profiles.converted(on, profile, kitti=source, store=store, definition=data_definition,
                                 val_fraction=data_val_fraction, seed=data_seed)
        base = on(zoo_model(ref=parent, store=store), "zoo-model")
        small = on(prune(dataset=data.outputs["dataset"], parent=parent, store=store,
                         flops_reduction=prune_flops_reduction, finetune_iters=prune_finetune_iters, seed=prune_seed),
                   "prune", gpu=True)
        settings = dict(deploy_config=export_deploy_config, targets=deploy_backends,
                        calibration_images=deploy_calibration_images, max_drop_float=deploy_max_drop_float,
                        max_drop_int8=deploy_max_drop_int8, gate_floor=deploy_gate_floor, batch_sizes=bench_batch_sizes,
                        threads=bench_threads, warmup=bench_warmup, max_images=bench_max_images)
        before = measure(dataset=data.outputs["dataset"], model=base.outputs["model"], **settings).set_display_name(
            "measure-parent")
        after = measure(dataset=data.outputs["dataset"], model=small.outputs["model"], **settings).set_display_name(
            "measure-pruned")
        on(register(dataset=data.outputs["dataset"], model=small.outputs["model"], report=after.outputs["report"],
                    onnx_model=after.outputs["onnx_model"], bench=after.outputs["results"], name=zoo_model_name,
                    parent="", alias=zoo_alias, store=store, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "register")
        on(optimize_report(dataset=data.outputs["dataset"], names="parent,pruned", model_a=base.outputs["model"],
                           report_a=before.outputs["report"], bench_a=before.outputs["results"],
                           model_b=small.outputs["model"], report_b=after.outputs["report"],
                           bench_b=after.outputs["results"]), "optimize-report")

    return optimize


optimize = build()
