"""KFP component: gated promotion of a zoo model (accuracy against production, deploy parity, latency budgets)."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("promote"), install_kfp_package=False)
def promote(dataset: Input[Dataset], name: str, candidate: str, alias: str, store: str, ap_tolerance: float,
            latency_budgets: str, report: Output[Artifact], summary: Output[Markdown]):
    """Promote ``name@candidate`` to ``alias`` when every gate passes; otherwise the step fails with the report."""
    import shutil
    from pathlib import Path

    from admlops.components.promote.promote import promote_gated

    try:
        result = promote_gated(name, candidate, dataset.path, report.path, store, alias, ap_tolerance, latency_budgets)
    finally:
        if (Path(report.path) / "promotion.md").is_file():
            shutil.copyfile(Path(report.path) / "promotion.md", summary.path)
    report.metadata.update({"passed": result["passed"], "version": result["candidate"], "alias": alias})
