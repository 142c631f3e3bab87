"""Experiment tracking the product adds to mmengine's (registered in ``mmengine.registry.VISBACKENDS``, which mmdet's
and mmdet3d's registries fall back to)."""
from __future__ import annotations

from mmengine.registry import VISBACKENDS
from mmengine.visualization import WandbVisBackend
from mmengine.visualization.vis_backend import force_init_env


@VISBACKENDS.register_module()
class WandbConfigVisBackend(WandbVisBackend):
    """mmengine's W&B backend without its code upload: mmengine's ``add_config`` also calls W&B's ``run.log_code()``
    on the working directory, which stages every ``.py`` file under it as a code artifact. From a checkout that is
    its virtual environment: tens of thousands of files, ~40 s added to every training start on two cores, and a copy
    of each left in ``~/.local/share/wandb`` that nothing deletes (~395 MB per run; 37 GB had gathered on the
    development machine). A run's code is its image and its config; the config is what this backend records, with the
    scalars as before."""

    @force_init_env
    def add_config(self, config, **kwargs) -> None:
        self._wandb.config.update(config.to_dict(), allow_val_change=self._init_kwargs.get("allow_val_change", False))
