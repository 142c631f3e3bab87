"""KFP components of the optimize pipeline: the parent model out of the zoo, and the report comparing the variants
(components/optimize/report.py)."""
from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Dataset, HTML, Input, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("zoo-model"), install_kfp_package=False)
def zoo_model(ref: str, store: str, model: Output[Model]):
    """The zoo model ``ref`` (NAME@VERSION or NAME@ALIAS in ``store``) as a model directory (every file verified)."""
    from admlops import refs

    _, version = refs.fetch(store, "models", ref, model.path, directory=True)
    model.metadata.update({"ref": ref, "version": f"{version.name}@{version.version}" if version else ref})


@dsl.component(base_image=image_for("optimize-report"), install_kfp_package=False)
def optimize_report(dataset: Input[Dataset], names: str,
                    model_a: Input[Model], report_a: Input[Artifact], bench_a: Input[Artifact],
                    model_b: Input[Model], report_b: Input[Artifact], bench_b: Input[Artifact],
                    report: Output[HTML], table: Output[Artifact],
                    model_c: Optional[Input[Model]] = None, report_c: Optional[Input[Artifact]] = None,
                    bench_c: Optional[Input[Artifact]] = None):
    """One row per variant (``names``, comma-separated, in the order a, b[, c]: parameters, MACs, the task's metric,
    latency and size per deploy target) and the accuracy-versus-latency plot with the Pareto front; ``table``:
    optimize.json."""
    import shutil
    import tempfile
    from pathlib import Path

    from admlops.components.optimize.report import write

    given = [(model_a, report_a, bench_a), (model_b, report_b, bench_b)] + [(model_c, report_c, bench_c)] * bool(model_c)
    variants = [{"name": name.strip(), "model": m.path, "report": r.path, "bench": b.path}
                for name, (m, r, b) in zip(names.split(","), given)]
    with tempfile.TemporaryDirectory() as tmp:
        result = write(variants, dataset.path, tmp)
        shutil.copyfile(Path(tmp) / "report.html", report.path)
        shutil.copyfile(Path(tmp) / "optimize.json", table.path)
    table.metadata.update({"target": result["target"], "pareto": [r["name"] for r in result["rows"] if r["pareto"]]})
