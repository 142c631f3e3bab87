"""Hyperparameter search on a dataset: KITTI-format data -> convert -> an Optuna study over the model config's
search space (each trial a training and an evaluation) -> the best model, registered in the zoo with the study in
its lineage."""
from kfp import dsl

from admlops.components.convert.component import convert
from admlops.components.tune.component import tune as tune_step
from admlops.pipelines import profiles


def build(profile: profiles.ClusterProfile | None = None):
    @dsl.pipeline(name="tune", description="Search a model config's hyperparameters with Optuna (TPE, median pruning) "
                  "and register the best trial's model.")
    def tune(
        source: str,
        store: str = "",
        data_definition: str = "kitti-3class",
        data_val_fraction: float = 0.2,
        data_seed: int = 0,
        train_config: str = "rtmdet_tiny_kitti",
        tune_trials: int = 8,
        tune_max_iters: int = 100,
        tune_reports: int = 3,
        tune_seed: int = 0,
        zoo_model_name: str = "",
    ):
        """``source``: KITTI-format data, a path or a dataset version NAME@VERSION in ``store``; ``train_config``: a
        config with a ``search_space``; ``tune_trials`` trials of ``tune_max_iters`` iterations each, validated
        ``tune_reports`` times for the pruner; ``zoo_model_name``: register the best model under it (empty: not
        registered). The trials run one after another in the tune step's pod (on its GPU with a GPU profile)."""
        on = profiles.scheduler(profile)
        data = on(convert(kitti=source, store=store, definition=data_definition, val_fraction=data_val_fraction,
                          seed=data_seed), "convert")
        on(tune_step(dataset=data.outputs["dataset"], config=train_config, trials=tune_trials, max_iters=tune_max_iters,
                     reports=tune_reports, seed=tune_seed, name=zoo_model_name, store=store), "tune", gpu=True)

    return tune


tune = build()
