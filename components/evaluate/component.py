"""KFP component: COCO bbox metrics of a trained model on the val split."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("evaluate"), install_kfp_package=False)
def evaluate(dataset: Input[Dataset], model: Input[Model], metrics: Output[Metrics], report: Output[Artifact]):
    """Evaluate on the val split; log mAP numbers as KFP metrics and keep the full JSON as an artifact."""
    from admlops.components.evaluate.evaluate import evaluate as run
    from admlops.kfp_metrics import log_coco

    result = run(dataset.path, model.path, report.path)
    log_coco(metrics, result)
