"""KFP component: a trained model's metrics on the val split, by its task (COCO bbox AP, KITTI or nuScenes AP)."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("evaluate"), install_kfp_package=False)
def evaluate(dataset: Input[Dataset], model: Input[Model], metrics: Output[Metrics], report: Output[Artifact],
             markdown: Output[Markdown]):
    """Evaluate on the val split; log the headline numbers as KFP metrics (2D: mAP and AP50 per class; KITTI: per
    class and mean AP40 moderate; nuScenes: mAP, NDS, per class AP), keep the full JSON as an artifact and the task's
    tables as Markdown."""
    from pathlib import Path

    from admlops.components.evaluate.evaluate import evaluate as run
    from admlops.kfp_metrics import log_evaluation
    from admlops.tasks import get_task

    result = run(dataset.path, model.path, report.path)
    log_evaluation(metrics, result)
    Path(markdown.path).write_text(get_task(result["task"]).markdown(result))
