"""A new drive into the corner-case loop: recorded drives (ROS 2 bags, MCAP, ROS 1 bags) -> ingest (every LiDAR scan
paired with each camera's image, poses and calibration from /tf) -> screen (blurred, badly exposed, near-duplicate
and standstill frames dropped by the definition's thresholds; the report; the frames kept published as an
unlabeled dataset version whose lineage names each recording's sha256) -> analyze (the route, distance, speed,
light and LiDAR density the kept frames cover) -> iterate's infer / score / select / report
with a zoo model against the current dataset version -> a labeling task of the chosen frames. The labels, once
back, go through the ``iterate`` pipeline's import and merge (``returned``), with the task this run exported."""
from kfp import dsl

from admlops.components.analyze.component import analyze
from admlops.components.ingest.component import ingest, screen
from admlops.pipelines import profiles
from admlops.pipelines.iterate import mine


def build(profile: profiles.ClusterProfile | None = None):
    @dsl.pipeline(name="collect", description="Ingest recorded drives, screen them into an unlabeled dataset version, "
                  "and mine it for corner cases: a labeling task of the frames worth labeling.")
    def collect(
        recordings: str,
        model: str,
        dataset: str,
        store: str = "",
        data_definition: str = "road-3class",
        frames_name: str = "",
        budget: int = 0,
        budget_boxes: int = 0,
        label_format: str = "cvat",
        infer_batch_size: int = 4,
        infer_score_thr: float = 0.005,
        select_diversity: float = 0.5,
        select_target_classes: str = "",
        select_weights: str = "",
    ):
        """``recordings``: a bag file, a rosbag2 directory, a folder of them, or a dataset version NAME@VERSION in
        ``store`` holding them; ``data_definition``: the definition whose ``recording`` section names the topics and
        the screening thresholds; ``frames_name``: the unlabeled version's name (default: the first recording's
        name + ``-frames``); ``model``: a zoo model NAME@ALIAS; ``dataset``: the current dataset version
        NAME@VERSION (novelty and rare classes are measured against it); ``budget`` / ``budget_boxes``: frames /
        predicted boxes to label (one of the two is needed); ``select_target_classes`` / ``select_weights``: the
        classes / conditions wanted (as in the ``iterate`` pipeline)."""
        on = profiles.scheduler(profile)

        frames = on(ingest(recordings=recordings, definition=data_definition, store=store), "ingest")
        kept = on(screen(frames=frames.outputs["frames"], definition=data_definition, store=store, name=frames_name),
                  "screen")
        on(analyze(dataset=kept.outputs["dataset"]), "analyze")
        mine(on, dict(pool="", pool_frames=kept.outputs["dataset"]), model, dataset, store, budget, budget_boxes,
             label_format, infer_batch_size, infer_score_thr, select_diversity, select_target_classes, select_weights)

    return collect


collect = build()
