"""KFP components of collection: recorded drives -> synchronised frames (ingest) -> the frames worth keeping as an
unlabeled dataset version, with the screening report (screen). Each calls the step function of the same name."""
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("ingest"), install_kfp_package=False)
def ingest(recordings: str, definition: str, store: str, frames: Output[Artifact]):
    """The recordings (a bag file, a rosbag2 directory, a folder of them, or a dataset version NAME@VERSION in
    ``store`` holding them) read with ``definition``'s topics, every LiDAR scan paired with each camera's image."""
    from admlops.components.ingest.ingest import ingest as run

    summary = run(recordings, definition, frames.path, store)
    frames.metadata.update({"frames": summary["frames"], "scans": summary["scans"], "dropped": summary["dropped"],
                            "recordings": [{"name": r["name"], "sha256": r["sha256"]} for r in summary["recordings"]]})


@dsl.component(base_image=image_for("screen"), install_kfp_package=False)
def screen(frames: Input[Artifact], definition: str, store: str, name: str, dataset: Output[Dataset],
           html: Output[HTML], markdown: Output[Markdown]):
    """The definition's screening rules over the ingested frames; the frames kept as an unlabeled dataset version
    (iterate's pool), and the screening report for the Kubeflow UI."""
    import shutil
    from pathlib import Path

    from admlops.components.ingest.screen import screen as run

    summary = run(frames.path, definition, dataset.path, store, name or None)
    shutil.copyfile(Path(dataset.path) / "report" / "screening.html", html.path)
    shutil.copyfile(Path(dataset.path) / "report" / "screening.md", markdown.path)
    version = summary["dataset_version"]
    dataset.metadata.update({"format": "frames", "frames": summary["kept"], "dropped": summary["dropped"],
                             "version": version, "object_uri": version["uri"]})
