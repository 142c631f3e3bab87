"""KFP component: an Optuna study over the model config's search space, each trial a train + evaluate."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, HTML, Input, Metrics, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("tune"), install_kfp_package=False)
def tune(dataset: Input[Dataset], config: str, trials: int, max_iters: int, reports: int, seed: int, name: str,
         store: str, study: Output[Artifact], model: Output[Model], metrics: Output[Metrics], report: Output[HTML]):
    """Run the study (components/tune/tune.py) in this step's pod, trial after trial; publish the study (SQLite,
    trial table), the best model, its value as a KFP metric and the HTML report; ``name``: register the best model
    in the zoo of ``store`` (empty: not registered)."""
    import shutil
    from pathlib import Path

    from admlops.components.tune.tune import tune as run

    result = run(dataset.path, study.path, config, trials, max_iters, reports, seed, name, store)
    shutil.copytree(Path(study.path) / "best", model.path)
    shutil.copyfile(Path(study.path) / "report.html", report.path)
    metrics.log_metric(f"best_{result['metric']}", round(result["best"]["value"], 4))
    metrics.log_metric("trials_complete", sum(t["state"] == "COMPLETE" for t in result["trials"]))
    study.metadata.update({"best": result["best"], "registered": result.get("registered")})
    model.metadata.update({"framework": "mmdet", "config": config, "trial": result["best"]["number"]})
