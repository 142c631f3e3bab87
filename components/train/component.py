"""KFP component: train an mmdet detector on a converted dataset."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from admlops.images import IMAGES


@dsl.component(base_image=IMAGES["cpu"], install_kfp_package=False)
def train(dataset: Input[Dataset], config: str, max_iters: int, batch_size: int, seed: int, model: Output[Model]):
    """Train ``config`` (a name under configs/models or a path) and publish weights, config and logs."""
    from admlops.components.train.train import train as run

    summary = run(dataset.path, model.path, config, max_iters or None, batch_size or None, seed)
    model.metadata.update({"framework": "mmdet", "config": config, **summary})
