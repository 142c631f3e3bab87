"""The return path of the loop: a zoo model over an unlabeled pool -> corner cases chosen under a label budget
-> a pre-labeled task for the labeling vendor -> (once the labels are back) a new dataset version.

Labeling takes days, so one pipeline serves both halves: run it with ``returned`` empty to get the selection,
the corner-case report and the task; run it again with ``returned`` = the vendor's file to import, validate and
merge it (the first half is recomputed identically: same model, pool, dataset and budget give the same task,
which import checks the returned labels against). The merged version is an input of ``detection2d``."""
from kfp import dsl

from admlops.components.convert.component import dataset_version
from admlops.components.iterate.component import export_task, import_labels, infer, merge, report, score, select
from admlops.pipelines import profiles


def mine(on, pool: dict, model, dataset, store, budget, budget_boxes, label_format, infer_batch_size, infer_score_thr,
         select_diversity, select_target_classes, select_weights):
    """The mining half of the loop as tasks: the current dataset version, infer over the pool (``pool``: infer's
    pool inputs), score, select, the report and the labeling task; returns the dataset-version and export-task
    tasks."""
    current = on(dataset_version(ref=dataset, store=store), "dataset-version")
    preds = on(infer(**pool, model_ref=model, store=store, batch_size=infer_batch_size, score_thr=infer_score_thr,
                     dataset=current.outputs["dataset"]), "iterate-infer", gpu=True)
    scores = on(score(predictions=preds.outputs["predictions"], dataset=current.outputs["dataset"]), "score")
    chosen = on(select(predictions=preds.outputs["predictions"], scores=scores.outputs["scores"], budget=budget,
                       diversity=select_diversity, budget_boxes=budget_boxes, target_classes=select_target_classes,
                       weights=select_weights),
                "select")
    on(report(predictions=preds.outputs["predictions"], scores=scores.outputs["scores"],
              selection=chosen.outputs["selection"]), "report")
    task = on(export_task(selection=chosen.outputs["selection"], predictions=preds.outputs["predictions"],
                          label_format=label_format), "export-task")
    return current, task


def preflight(params: dict) -> None:
    """Before a local ``iterate`` or ``collect`` run starts any step, the selection's settings: a budget in frames or
    boxes, and the target classes' and signal weights' grammar (a share outside (0, 1], a weight below 0): UsageErrors
    naming the value, exit 2. Whether a target class exists depends on the dataset version's definition and the
    model, which select checks once it has them."""
    from admlops.components.iterate.select import check_budget, parse_weights
    from admlops.components.iterate.target import parse_targets

    check_budget(params["budget"] or None, params["budget_boxes"] or None)  # 0: that limit unused, as select takes it
    parse_targets(params["select_target_classes"])
    parse_weights(params["select_weights"])


def build(profile: profiles.ClusterProfile | None = None):
    @dsl.pipeline(name="iterate", description="Mine corner cases from an unlabeled pool with a zoo model, hand them to "
                  "labeling, and merge the returned labels into a new dataset version.")
    def iterate(
        model: str,
        pool: str,
        dataset: str,
        budget: int = 0,
        store: str = "",
        label_format: str = "cvat",
        returned: str = "",
        merged_name: str = "",
        infer_batch_size: int = 4,
        infer_score_thr: float = 0.005,
        select_diversity: float = 0.5,
        budget_boxes: int = 0,
        select_target_classes: str = "",
        select_weights: str = "",
    ):
        """``model``: a zoo model NAME@ALIAS (or NAME@VERSION) in ``store``; ``pool``: a folder of images or a
        converted dataset; ``dataset``: the current dataset version NAME@VERSION (rare classes and novelty are
        measured against it, and the labels merge into it); ``budget``: frames to label, and/or ``budget_boxes``:
        the model's predicted boxes to label (the vendor's unit; 0: no such limit; one of the two is needed);
        ``select_target_classes``: the classes the team is short of, ``CLASS[=SHARE],...`` (the wanted share of the
        chosen boxes, default 1), empty for none; ``select_weights``: the conditions wanted, as the signals' weights
        ``SIGNAL=WEIGHT,...`` (e.g. ``novelty=3``; default 1 each); ``returned``: the vendor's labels (CVAT XML or
        Label Studio JSON, per ``label_format``), empty until they are back."""
        on = profiles.scheduler(profile)

        current, task = mine(on, dict(pool=pool), model, dataset, store, budget, budget_boxes, label_format,
                             infer_batch_size, infer_score_thr, select_diversity, select_target_classes,
                             select_weights)
        with dsl.If(returned != "", name="labels-returned"):
            labels = on(import_labels(task=task.outputs["task"], returned=returned), "import-labels")
            on(merge(labels=labels.outputs["labels"], parent=current.outputs["dataset"], store=store, name=merged_name),
               "merge")

    return iterate


iterate = build()
