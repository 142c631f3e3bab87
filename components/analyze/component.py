"""KFP component: the dataset analysis report, shown in the Kubeflow UI as HTML and Markdown."""
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("analyze"), install_kfp_package=False)
def analyze(dataset: Input[Dataset], report: Output[Artifact], html: Output[HTML], markdown: Output[Markdown]):
    """Class balance, box geometry, positions, truncation/occlusion, distance, empty frames, label errors; of an
    unlabeled collection (screen's output): route, distance, speed, light and LiDAR density."""
    import shutil
    from pathlib import Path

    from admlops.components.analyze.report import analyze as run

    summary = run(dataset.path, report.path)
    shutil.copyfile(Path(report.path) / "report.html", html.path)
    shutil.copyfile(Path(report.path) / "report.md", markdown.path)
    report.metadata.update({"warnings": len(summary["warnings"]),
                            **{k: len(summary[k]) for k in ("label_errors", "empty_frames") if k in summary}})
