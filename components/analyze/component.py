"""KFP component: the dataset analysis report, shown in the Kubeflow UI as HTML and Markdown."""
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("analyze"), install_kfp_package=False)
def analyze(dataset: Input[Dataset], report: Output[Artifact], html: Output[HTML], markdown: Output[Markdown]):
    """Class balance, box geometry, positions, truncation/occlusion, distance, empty frames, label errors."""
    import shutil
    from pathlib import Path

    from admlops.components.analyze.report import analyze as run

    summary = run(dataset.path, report.path)
    shutil.copyfile(Path(report.path) / "report.html", html.path)
    shutil.copyfile(Path(report.path) / "report.md", markdown.path)
    report.metadata.update({"warnings": len(summary["warnings"]), "label_errors": len(summary["label_errors"]),
                            "empty_frames": len(summary["empty_frames"])})
