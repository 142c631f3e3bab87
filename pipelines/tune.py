"""Hyperparameter search on a dataset: KITTI-format data -> convert -> an Optuna study over the model config's
search space, its trials run by a ParallelFor of workers sharing the study (each trial a training and an
evaluation) -> the best model, registered in the zoo with the study in its lineage."""
from kfp import dsl

from admlops.components.tune.component import tune_best, tune_study, tune_worker
from admlops.pipelines import profiles


def build(profile: profiles.ClusterProfile | None = None):
    @dsl.pipeline(name="tune", description="Search a model config's hyperparameters with Optuna (TPE, median pruning), "
                  "the trials on parallel workers, and register the best trial's model.")
    def tune(
        source: str,
        store: str = "",
        data_definition: str = "kitti-3class",
        data_val_fraction: float = 0.2,
        data_seed: int = 0,
        train_config: str = "rtmdet_tiny_kitti",
        tune_trials: int = 8,
        tune_workers: int = 2,
        tune_max_iters: int = 100,
        tune_reports: int = 3,
        tune_seed: int = 0,
        zoo_model_name: str = "",
    ):
        """``source``: KITTI-format data, a path or a dataset version NAME@VERSION in ``store``; ``train_config``: a
        config with a ``search_space``; ``tune_trials`` trials in all, of ``tune_max_iters`` iterations each,
        validated ``tune_reports`` times for the pruner, run by ``tune_workers`` workers at once (a ParallelFor:
        one pod each, with a GPU under a GPU profile) sharing one study through a journal file on the profile's
        study volume; ``zoo_model_name``: register the best model under it (empty: not registered)."""
        on = profiles.scheduler(profile)
        data = profiles.converted(on, profile, kitti=source, store=store, definition=data_definition,
                                 val_fraction=data_val_fraction, seed=data_seed)
        study = on(tune_study(dataset=data.outputs["dataset"], config=train_config, seed=tune_seed,
                              workers=tune_workers, store=store), "tune-study")
        with dsl.ParallelFor(study.outputs["Output"]) as worker:
            trials = on(tune_worker(dataset=data.outputs["dataset"], study=study.outputs["study"],
                                    config=train_config, trials=tune_trials,
                                    max_iters=tune_max_iters, reports=tune_reports, seed=tune_seed, worker=worker),
                        "tune", gpu=True)
        on(tune_best(study=study.outputs["study"], config=train_config,
                     models=dsl.Collected(trials.outputs["models"]), name=zoo_model_name, store=store,
                     max_iters=tune_max_iters, seed=tune_seed), "tune-best")

    return tune


tune = build()
