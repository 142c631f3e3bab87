"""KFP component of quantization-aware training (components/qat/qat.py): a zoo model fine-tuned with int8 in the loop."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("qat"), install_kfp_package=False)
def qat(dataset: Input[Dataset], parent: str, store: str, iters: int, seed: int, model: Output[Model],
        metrics: Output[Metrics]):
    """Fine-tune ``parent`` (a zoo NAME@VERSION / NAME@ALIAS in ``store``) with int8 in the loop ``iters`` iterations
    (0: calibrated only, below 0: the config's) on the dataset; the model directory, whose export carries its Q/DQ
    graph."""
    from admlops.components.qat.qat import qat as run

    record = run(parent, dataset.path, model.path, None if iters < 0 else iters, seed, store)
    metrics.log_metric("quantized_convolutions", record["quantized"])
    metrics.log_metric("finetune_iterations", record["finetune"]["iterations"])
    model.metadata.update({"framework": "mmdet", "parent": record["parent"], "quantization": "int8 QAT"})
