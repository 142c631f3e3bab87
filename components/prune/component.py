"""KFP component of structural pruning (components/prune/prune.py): a zoo model pruned and fine-tuned."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("prune"), install_kfp_package=False)
def prune(dataset: Input[Dataset], parent: str, store: str, flops_reduction: float, finetune_iters: int, seed: int,
          model: Output[Model], metrics: Output[Metrics]):
    """Prune ``parent`` (a zoo NAME@VERSION / NAME@ALIAS in ``store``) to ``flops_reduction`` fewer MACs and
    fine-tune it ``finetune_iters`` iterations (0: not fine-tuned, below 0: the config's) on the dataset; the model
    directory."""
    from admlops.components.prune.prune import prune as run

    record = run(parent, dataset.path, model.path, flops_reduction, None if finetune_iters < 0 else finetune_iters, seed,
                 store)
    (macs0, macs), (params0, params) = record["macs"], record["params"]
    metrics.log_metric("macs_reduction", round(1 - macs / macs0, 4))
    metrics.log_metric("params_reduction", round(1 - params / params0, 4))
    model.metadata.update({"framework": "mmdet", "parent": record["parent"], "macs": macs, "params": params})
