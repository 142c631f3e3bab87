"""KFP component: train an mmdet detector on a converted dataset, or an mmdet3d one on an mmdet3d data root."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("train"), install_kfp_package=False)
def train(dataset: Input[Dataset], config: str, max_iters: int, batch_size: int, seed: int, run_id: str,
          model: Output[Model], cfg_options: str = "", init_from: str = "", store: str = ""):
    """Train ``config`` (a name under configs/models or a path) and publish weights, config and logs; W&B logs
    (offline unless WANDB_MODE says otherwise) land in the model's work/wandb, grouped by the pipeline run.
    ``cfg_options``: space-separated KEY=VALUE config overrides, as ``admlops train --cfg-options`` takes them.
    ``init_from``: a zoo model NAME@VERSION|ALIAS in ``store`` (or a checkpoint path) to start from; ``auto``: the
    model that mined the dataset's source version (an iterate round's merge), else from scratch; empty: scratch."""
    from admlops.mmconfig import parse_cfg_options
    from admlops.components.train.init_from import mined_by
    from admlops.components.train.train import train as run

    if init_from == "auto":
        init_from = mined_by(dataset.metadata.get("source"), store)
    summary = run(dataset.path, model.path, config, max_iters or None, batch_size or None, seed, run_id=run_id, wandb=True,
                  cfg_options=parse_cfg_options(cfg_options), init_from=init_from, init_store=store)
    model.metadata.update({"framework": "mmdet", "config": config, "run_id": run_id, **summary})
