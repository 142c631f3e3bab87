"""KFP components of the loop's closing steps: infer -> score -> select -> report, export a labeling task, import
the returned labels, merge them into a new dataset version. Each calls the step function of the same name."""
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("iterate-infer"), install_kfp_package=False)
def infer(pool: str, model_ref: str, store: str, batch_size: int, score_thr: float, dataset: Input[Dataset],
          predictions: Output[Artifact], model: Input[Model] = None, pool_frames: Input[Dataset] = None):
    """Predict the pool (a folder of images or a converted dataset; or ``pool_frames``, screen's unlabeled frames)
    with ``model`` (train's output) or, when ``model_ref`` is set, the zoo model NAME@VERSION|ALIAS in ``store``;
    embed ``dataset`` (the current one) too."""
    from admlops.components.iterate.infer import infer as run

    if not model_ref and model is None:
        raise ValueError("infer needs a model: a Model artifact or model_ref NAME@ALIAS")
    pool = pool_frames.path if pool_frames is not None else pool
    summary = run(model_ref or model.path, pool, predictions.path, dataset.path, store, batch_size, score_thr)
    predictions.metadata.update({"frames": summary["frames"], "model": summary["model"], "pool": summary["pool"]})


@dsl.component(base_image=image_for("iterate"), install_kfp_package=False)
def score(predictions: Input[Artifact], dataset: Input[Dataset], scores: Output[Artifact]):
    """Every selection signal on every pool frame, against the current dataset."""
    from admlops.components.iterate.score import score as run

    summary = run(predictions.path, dataset.path, scores.path)
    scores.metadata.update({"signals": summary["signals"], "frames": summary["frames"], "stats": summary["stats"]})


@dsl.component(base_image=image_for("iterate"), install_kfp_package=False)
def select(predictions: Input[Artifact], scores: Input[Artifact], budget: int, diversity: float,
           selection: Output[Artifact], budget_boxes: int = 0, target_classes: str = "", weights: str = ""):
    """``budget`` frames and/or ``budget_boxes`` predicted boxes (0: that limit unused) by combined signal with a
    diversity penalty, each with its reasons; ``target_classes`` (``CLASS[=SHARE],...``, empty: none) first;
    ``weights`` (``SIGNAL=WEIGHT,...``, empty: 1 each) weigh the signals."""
    from admlops.components.iterate.select import select as run

    summary = run(predictions.path, scores.path, selection.path, budget or None, diversity=diversity,
                  budget_boxes=budget_boxes or None, targets=target_classes, weights=weights)
    selection.metadata.update({"budget": budget, "budget_boxes": budget_boxes, "targets": summary["targets"],
                               "chosen_by_signal": summary["chosen_by_signal"], "boxes": summary["boxes"]})


@dsl.component(base_image=image_for("iterate"), install_kfp_package=False)
def report(predictions: Input[Artifact], scores: Input[Artifact], selection: Input[Artifact], report: Output[Artifact],
           html: Output[HTML], markdown: Output[Markdown]):
    """The corner-case report, shown in the Kubeflow UI as HTML and Markdown."""
    import shutil
    from pathlib import Path

    from admlops.components.iterate.report import report as run

    summary = run(predictions.path, scores.path, selection.path, report.path)
    shutil.copyfile(Path(report.path) / "report.html", html.path)
    shutil.copyfile(Path(report.path) / "report.md", markdown.path)
    report.metadata.update({"chosen": summary["chosen"], "chosen_by_signal": summary["chosen_by_signal"]})


@dsl.component(base_image=image_for("iterate"), install_kfp_package=False)
def export_task(selection: Input[Artifact], predictions: Input[Artifact], label_format: str, task: Output[Artifact]):
    """A labeling task (``cvat`` or ``labelstudio``) of the chosen frames with the model's boxes pre-annotated."""
    from admlops.components.iterate.task import export_task as run

    record = run(selection.path, predictions.path, task.path, label_format)
    task.metadata.update({"format": label_format, "name": record["name"], "frames": len(record["frames"])})


@dsl.component(base_image=image_for("iterate"), install_kfp_package=False)
def import_labels(task: Input[Artifact], returned: str, labels: Output[Artifact]):
    """The vendor's returned labels (a path), checked against the task and its labeling standard."""
    from admlops.components.iterate.task import import_labels as run

    summary = run(task.path, returned, labels.path)
    labels.metadata.update({"frames": summary["frames"], "objects": summary["objects"], "by_label": summary["by_label"]})


@dsl.component(base_image=image_for("iterate"), install_kfp_package=False)
def merge(labels: Input[Artifact], parent: Input[Dataset], store: str, name: str, dataset: Output[Dataset]):
    """The labels added to the parent dataset's train split: a new dataset version in ``store`` with its lineage."""
    from admlops.components.iterate.merge import merge as run

    version = parent.metadata.get("version") or {}
    ref = f"{version['name']}@{version['version']}" if version.get("name") else parent.path
    result = run(labels.path, ref, dataset.path, store, name or None)
    dataset.metadata.update({"format": "coco", "frames": result["summary"]["frames"], "version": result["dataset_version"],
                             "parent": result["lineage"]["parent"], "object_uri": result["dataset_version"]["uri"]})
