"""KFP component: publish the trained, evaluated, exported and benchmarked model to the model zoo."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("register"), install_kfp_package=False)
def register(
    dataset: Input[Dataset],
    model: Input[Model],
    report: Input[Artifact],
    onnx_model: Input[Model],
    bench: Input[Artifact],
    name: str,
    parent: str,
    alias: str,
    store: str,
    run_id: str,
    zoo_model: Output[Model],
):
    """One zoo version with lineage and deploy gates; ``alias`` is set only when every gate passed. The output
    artifact carries its URI."""
    import json
    from pathlib import Path

    from admlops.components.register.register import register as run

    result = run(model.path, report.path, onnx_model.path, bench.path, dataset.metadata["version"], name, run_id,
                 parent, alias, store)
    Path(zoo_model.path).write_text(json.dumps(result, indent=2))
    zoo_model.metadata.update({"object_uri": result["uri"], "version": result["version"],
                               "alias": alias if result["alias"] else "", "gates_passed": result["gates_passed"]})
