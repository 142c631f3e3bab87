"""Gated promotion: evaluate a candidate zoo model and the current production model on the same dataset version
and move the ``production`` alias only when every gate (accuracy, deploy parity, latency budgets) passes."""
from kfp import dsl

from admlops.components.convert.component import dataset_version
from admlops.components.promote.component import promote as promote_step
from admlops.pipelines import profiles


def build(profile: profiles.ClusterProfile | None = None):
    @dsl.pipeline(name="promote", description="Promote a candidate model to production when it regresses no class, "
                  "passed its deploy gates and meets the latency budgets.")
    def promote(
        model: str,
        dataset: str,
        candidate: str = "candidate",
        alias: str = "production",
        store: str = "",
        ap_tolerance: float = 1.0,
        latency_budgets: str = "",
    ):
        """``model``: the zoo model's name; ``candidate``: its version or alias to promote; ``dataset``: the dataset
        version NAME@VERSION both models are evaluated on; ``ap_tolerance``: the largest per-class AP@0.5 drop
        allowed, in points; ``latency_budgets``: ``backend:precision=ms`` pairs (p50 at batch 1), comma-separated."""
        on = profiles.scheduler(profile)

        data = on(dataset_version(ref=dataset, store=store), "dataset-version")
        on(promote_step(dataset=data.outputs["dataset"], name=model, candidate=candidate, alias=alias, store=store,
                        ap_tolerance=ap_tolerance, latency_budgets=latency_budgets), "promote", gpu=True)

    return promote


promote = build()
