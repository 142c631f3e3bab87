"""KFP components of the optimize pipeline: the parent model out of the zoo, and the report comparing the variants
(components/optimize/report.py)."""
from kfp import dsl
from kfp.dsl import Artifact, HTML, Input, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("zoo-model"), install_kfp_package=False)
def zoo_model(ref: str, store: str, model: Output[Model]):
    """The zoo model ``ref`` (NAME@VERSION or NAME@ALIAS in ``store``) as a model directory (every file verified)."""
    from admlops import refs

    _, version = refs.fetch(store, "models", ref, model.path, directory=True)
    model.metadata.update({"ref": ref, "version": f"{version.name}@{version.version}" if version else ref})


@dsl.component(base_image=image_for("optimize-report"), install_kfp_package=False)
def optimize_report(parent: Input[Model], parent_report: Input[Artifact], parent_bench: Input[Artifact],
                    pruned: Input[Model], pruned_report: Input[Artifact], pruned_bench: Input[Artifact],
                    report: Output[HTML], table: Output[Artifact]):
    """One row per variant (parameters, MACs, the task's metric, latency and size per deploy target) and the
    accuracy-versus-latency plot with the Pareto front; ``table``: optimize.json."""
    import shutil
    import tempfile
    from pathlib import Path

    from admlops.components.optimize.report import write

    with tempfile.TemporaryDirectory() as tmp:
        result = write([{"name": parent.metadata.get("version", "parent"), "model": parent.path,
                         "report": parent_report.path, "bench": parent_bench.path},
                        {"name": "pruned", "model": pruned.path, "report": pruned_report.path,
                         "bench": pruned_bench.path}], tmp)
        shutil.copyfile(Path(tmp) / "report.html", report.path)
        shutil.copyfile(Path(tmp) / "optimize.json", table.path)
    table.metadata.update({"target": result["target"], "pareto": [r["name"] for r in result["rows"] if r["pareto"]]})
