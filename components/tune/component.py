"""KFP components of the tune pipeline: one creates the study, a ParallelFor of workers runs its trials against
it, one publishes and registers the best (components/tune/tune.py)."""
from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, HTML, Input, Metrics, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("tune-study"), install_kfp_package=False)
def tune_study(dataset: Input[Dataset], config: str, seed: int, workers: int, store: str, study: Output[Artifact]
               ) -> List[int]:
    """Check the config's search space against the dataset and create the empty study in the file every worker
    reaches (the cluster profile's study volume, or a local store's studies/); ``study``: its name and file (JSON);
    returns the workers' indices, the ParallelFor's items."""
    import json
    from pathlib import Path

    from admlops.components.tune.tune import create_study

    made = create_study(dataset.path, config, seed, workers, store)
    Path(study.path).write_text(json.dumps({"study": made["study"], "file": made["file"]}))
    study.metadata.update({"study": made["study"], "file": made["file"]})
    return made["workers"]


@dsl.component(base_image=image_for("tune"), install_kfp_package=False)
def tune_worker(dataset: Input[Dataset], study: Input[Artifact], config: str, trials: int, max_iters: int,
                reports: int, seed: int, worker: int, models: Output[Model]):
    """Trials of the shared study (sampler seeded ``seed + worker``) until it holds ``trials``; the models of the
    trials this worker completed."""
    import json
    from pathlib import Path

    from admlops.components.tune.tune import work

    made = json.loads(Path(study.path).read_text())
    done = work(dataset.path, made["file"], made["study"], config, trials, max_iters, reports, seed, worker, models.path)
    models.metadata.update({"worker": worker, "trials": done})


@dsl.component(base_image=image_for("tune-best"), install_kfp_package=False)
def tune_best(study: Input[Artifact], config: str, models: Input[List[Model]], name: str, store: str,
              max_iters: int, seed: int, result: Output[Artifact], model: Output[Model], metrics: Output[Metrics],
              report: Output[HTML]):
    """Publish the finished study (SQLite copy, trial table), the best model, its value as a KFP metric and the
    HTML report; ``name``: register the best model in the zoo of ``store`` (empty: not registered)."""
    import json
    import shutil
    from pathlib import Path

    from admlops.components.tune.tune import finish

    made = json.loads(Path(study.path).read_text())
    out = finish(made["file"], made["study"], config, [m.path for m in models], result.path, name, store, max_iters=max_iters,
                 seed=seed)
    shutil.copytree(Path(result.path) / "best", model.path)
    shutil.copyfile(Path(result.path) / "report.html", report.path)
    metrics.log_metric(f"best_{out['metric']}", round(out["best"]["value"], 4))
    metrics.log_metric("trials_complete", sum(t["state"] == "COMPLETE" for t in out["trials"]))
    result.metadata.update({"best": out["best"], "registered": out.get("registered")})
    model.metadata.update({"framework": "mmdet", "config": config, "trial": out["best"]["number"]})
