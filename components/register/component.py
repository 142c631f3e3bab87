"""KFP component: publish the trained, evaluated, exported and benchmarked model to the model zoo."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("register"), install_kfp_package=False)
def register(
    dataset: Input[Dataset],
    model: Input[Model],
    report: Input[Artifact],
    name: str,
    parent: str,
    alias: str,
    store: str,
    run_id: str,
    zoo_model: Output[Model],
    onnx_model: Input[Model] = None,
    bench: Input[Artifact] = None,
    engines: Input[Model] = None,
):
    """One zoo version with lineage and deploy gates; ``alias`` covers the deploy targets whose gates passed (not set
    when none passed; a failed target is blocked and named in the alias record). The output
    artifact carries its URI. ``onnx_model`` and ``bench`` (export's and benchmark's) are left out for a model
    that is not exported; ``engines`` (export-trt's) adds the TensorRT engines' gates."""
    import json
    from pathlib import Path

    from admlops.components.register.register import register as run

    result = run(model.path, report.path, onnx_model.path if onnx_model else None, bench.path if bench else None,
                 dataset.metadata["version"], name, run_id, parent, alias, store,
                 engines_dir=engines.path if engines else None)
    Path(zoo_model.path).write_text(json.dumps(result, indent=2))
    zoo_model.metadata.update({"object_uri": result["uri"], "version": result["version"],
                               "alias": alias if result["alias"] else "", "gates_passed": result["gates_passed"]})
