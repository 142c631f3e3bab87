"""The product's own OpenMMLab modules, registered into mmdet's registries and loaded from a config by

    custom_imports = dict(imports=['admlops.mmext'], allow_failed_imports=False)

(configs/models/rtmdet_tiny_kitti_lowlight.py ships one that uses both kinds below).

* ``transforms.LowLight`` — a data transform: night / underexposed scenes (gain, gamma, sensor noise), the corner
  case a daytime dataset lacks.
* ``necks.SECSPNeXtPAFPN`` — a model part: RTMDet's CSPNeXtPAFPN with squeeze-and-excitation channel attention on
  every output level.
* ``pruned.PrunedDetector`` — a detector with the channel counts structural pruning left (components/prune writes
  its configs).
* ``distill.DistillingDetector`` — a student detector trained against a frozen teacher (components/distill writes
  its configs).
* ``quantized.QuantizedDetector`` — a detector whose convolutions train with int8 in the loop and export as a Q/DQ
  graph (components/qat writes its configs).
* ``tracking.WandbConfigVisBackend`` — mmengine's W&B backend recording the config without uploading the working
  directory's code (train's ``wandb`` logging).

Add your own: one file here (or anywhere importable) whose classes carry ``@TRANSFORMS.register_module()`` /
``@MODELS.register_module()`` from ``mmdet.registry`` (``mmdet3d.registry`` for 3D), import it below, and name
the class as ``type='YourClass'`` in a config that has the ``custom_imports`` line above. A module outside this
package goes into that config's ``imports`` list instead.
"""
from admlops.mmext import distill, necks, pruned, quantized, tracking, transforms  # noqa: F401  (importing registers the modules)
