"""KFP component of knowledge distillation (components/distill/distill.py): a student trained under a zoo teacher."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("distill"), install_kfp_package=False)
def distill(dataset: Input[Dataset], teacher: str, store: str, student_config: str, max_iters: int, batch_size: int,
            seed: int, model: Output[Model], metrics: Output[Metrics]):
    """Train ``student_config`` ``max_iters`` iterations at ``batch_size`` (0: the config's) on the dataset, guided
    by ``teacher`` (a zoo NAME@VERSION / NAME@ALIAS in ``store``); the student's model directory."""
    from admlops.components.distill.distill import distill as run

    record = run(teacher, dataset.path, model.path, student_config, max_iters or None, seed, store, batch_size or None)
    for name, values in record["losses"].items():
        metrics.log_metric(f"{name}_last", round(values["last"], 5))
    model.metadata.update({"framework": "mmdet", "config": student_config, "teacher": record["teacher"]})
