"""KFP component: synthetic KITTI object data (for demos and smoke runs without real data)."""
from kfp import dsl
from kfp.dsl import Dataset, Output

from admlops.images import IMAGES


@dsl.component(base_image=IMAGES["cpu"], install_kfp_package=False)
def synth_kitti(frames: int, seed: int, kitti: Output[Dataset]):
    """Write ``frames`` synthetic KITTI frames (images, labels, calib, velodyne)."""
    from admlops.components.synth.kitti import synth_kitti as run

    run(kitti.path, frames=frames, seed=seed)
    kitti.metadata.update({"format": "kitti", "frames": frames, "seed": seed})
