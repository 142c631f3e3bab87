"""KFP component: train on the cluster as a Kubeflow Trainer v2 TrainJob (multi-node, multi-GPU)."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("train-distributed"), install_kfp_package=False)
def train_distributed(
    dataset: Input[Dataset], config: str, max_iters: int, batch_size: int, seed: int, image: str, num_nodes: int,
    procs_per_node: int, gpus_per_node: int, namespace: str, s3_secret: str, timeout_s: int, run_id: str,
    model: Output[Model], trainjob: Output[Artifact], init_from: str = "", store: str = "",
):
    """Run ``admlops train`` on ``num_nodes`` nodes x ``procs_per_node`` processes as a TrainJob of the
    ``torch-distributed`` ClusterTrainingRuntime, streaming node 0's log into this step's log.

    This step's pod only orchestrates (CPU image); the nodes run ``image``, read the dataset from its object
    URI (``object_uri`` metadata, else the artifact URI) and write the model straight to ``model``'s URI, with
    S3 credentials from the Secret ``s3_secret`` (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally
    AWS_ENDPOINT_URL). ``namespace`` empty = this pod's namespace; its service account needs create/get/delete
    on trainjobs and get/list on pods, pods/log and events there. The rendered TrainJob is the ``trainjob``
    artifact (no secret values in it). A failed, timed-out or deleted TrainJob fails the step, and the
    TrainJob is deleted whatever happens.

    ``max_iters``, ``batch_size`` (per process) and ``seed`` are the train step's: 0 keeps the config's value.
    ``run_id`` names the TrainJob and is the run id of the checkpoints, W&B and the zoo's lineage. Pass ``run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER`` from the pipeline: the KFP
    driver resolves a placeholder given as a task input to the run's UUID (kfp.local to its own id), whereas a
    placeholder as this function's default would reach the code unresolved on a cluster, as KFP does not put
    defaults into the executor input.
    """
    import json
    from pathlib import Path

    import yaml

    from admlops.components.train_distributed.trainjob import (
        current_namespace, object_uri, render_trainjob, run_trainjob, train_command, trainjob_name,
    )

    if "{{" in run_id:
        raise ValueError(f"expected a resolved run id, got {run_id!r}: pass run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER "
                         "from the pipeline")
    namespace = namespace or current_namespace()
    name, out_uri = trainjob_name(run_id), object_uri(model.uri)
    if init_from == "auto":  # the model that mined the dataset's source version, if it was mined
        from admlops.components.train.init_from import mined_by

        init_from = mined_by(dataset.metadata.get("source"), store)
    command = train_command(object_uri(dataset.metadata.get("object_uri") or dataset.uri), out_uri, config, procs_per_node,
                            run_id, max_iters, batch_size, seed, init_from, store)
    obj = render_trainjob(
        name, namespace, image, command, num_nodes, procs_per_node,
        {"nvidia.com/gpu": gpus_per_node} if gpus_per_node > 0 else {}, {"PYTHONUNBUFFERED": "1"}, s3_secret or None,
        labels={"admlops/step": "train", "admlops/run-id": run_id}, active_deadline_s=timeout_s + 600,
    )
    Path(trainjob.path).write_text(yaml.safe_dump(obj, sort_keys=False))
    final = run_trainjob(obj, namespace, timeout_s)
    # The nodes wrote the model under model.uri; KFP uploads model.path there too, so record the run beside it.
    Path(model.path).mkdir(parents=True, exist_ok=True)
    (Path(model.path) / "trainjob.json").write_text(json.dumps({"name": name, "status": final.get("status")}, indent=2))
    model.metadata.update({"framework": "mmdet", "config": config, "trainjob": name, "run_id": run_id, "num_nodes": num_nodes,
                           "procs_per_node": procs_per_node, "object_uri": out_uri})
    trainjob.metadata.update({"name": name, "namespace": namespace})
