"""Logging evaluation results as KFP Metrics (the scalars the Kubeflow UI shows and compares across runs)."""
from admlops.tasks import get_task


def log_evaluation(metrics, result: dict, prefix: str = "") -> None:
    """``metrics`` is a ``kfp.dsl.Metrics`` output; ``result`` a task's metrics record (evaluate's, or a deploy
    target's): its task logs its headline numbers (admlops.tasks: ``log_metrics``)."""
    get_task(result["task"]).log_metrics(metrics, result, prefix)
