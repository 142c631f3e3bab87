"""Cluster profiles (configs/cluster/*.yaml): how a pipeline's steps are scheduled on a particular GPU cluster,
applied with kfp-kubernetes at compile time so they are visible in the compiled YAML.

A profile names the accelerator (resource name and count per GPU step), node selectors and tolerations for
GPU steps, CPU/memory for every step, an in-memory /dev/shm for data loaders, the Secret whose keys become the
S3 environment (never values), image pull secrets, the volume the tune pipeline's workers share their study on
(``study_volume``), how many conversion shards run at once (``shard_parallelism``), and whether training runs in the step's pod or as a multi-node Kubeflow Trainer TrainJob
(``train_nodes``). Without a profile (``kfp.local`` and the committed
YAML) steps carry no Kubernetes settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from admlops.errors import InputError

SHARD_RETRIES = 2  # a conversion shard that fails is retried alone, this many times
STUDY_STEPS = ("tune-study", "tune", "tune-best")  # the steps that open the tune pipeline's shared study
STUDY_MOUNT = "/studies"
S3_ENV = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    accelerator: str = "nvidia.com/gpu"
    gpus: int = 1
    gpu_node_selector: dict = field(default_factory=dict)
    gpu_tolerations: list = field(default_factory=list)
    cpu: str = "4"
    memory: str = "16Gi"
    shm_size: str = "8Gi"
    s3_secret: str = ""
    s3_secret_keys: dict = field(default_factory=lambda: dict(S3_ENV))  # secret key -> env var
    s3_endpoint_key: str = ""  # optional secret key holding AWS_ENDPOINT_URL (MinIO)
    image_pull_secrets: list = field(default_factory=list)
    train_nodes: int = 0  # > 0: train as a Kubeflow Trainer TrainJob on this many nodes (train-distributed)
    train_procs_per_node: int = 1  # processes (GPUs) per node of the TrainJob
    train_timeout_s: int = 24 * 3600
    study_volume: str = ""  # a ReadWriteMany PVC the tune pipeline's workers share their Optuna study on
    shard_parallelism: int = 8  # conversion shards (ParallelFor iterations) running at once


def load_profile(name_or_path: str | Path) -> ClusterProfile:
    from admlops.configs import resolve

    path = resolve("cluster", name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    unknown = set(data) - set(ClusterProfile.__dataclass_fields__)
    if unknown:
        raise InputError(path, f"unknown profile keys: {', '.join(sorted(unknown))}")
    return ClusterProfile(**data)


def apply(task, profile: ClusterProfile | None, step: str, gpu: bool = False):
    """Schedule ``task`` (component ``step``) per ``profile`` (a no-op without one); ``gpu`` steps get the
    accelerator, GPU nodes and their CUDA image (admlops.images.image_for)."""
    if profile is None:
        return task
    from kfp import kubernetes

    from admlops.images import image_for

    task.set_cpu_request(profile.cpu).set_memory_request(profile.memory).set_memory_limit(profile.memory)
    if gpu:
        task.set_container_image(image_for(step, gpu=True))
        task.set_accelerator_type(profile.accelerator).set_accelerator_limit(profile.gpus)
        for key, value in profile.gpu_node_selector.items():
            kubernetes.add_node_selector(task, key, value)
        for tol in profile.gpu_tolerations:
            kubernetes.add_toleration(task, **tol)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=profile.shm_size)
    if profile.s3_secret:
        keys = dict(profile.s3_secret_keys)
        if profile.s3_endpoint_key:
            keys[profile.s3_endpoint_key] = "AWS_ENDPOINT_URL"
        kubernetes.use_secret_as_env(task, profile.s3_secret, keys)
    if profile.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(profile.image_pull_secrets))
    if profile.study_volume and step in STUDY_STEPS:
        from admlops.components.tune.tune import STUDY_DIR_ENV

        kubernetes.mount_pvc(task, pvc_name=profile.study_volume, mount_path=STUDY_MOUNT)
        task.set_env_variable(STUDY_DIR_ENV, STUDY_MOUNT)
    return task


def scheduler(profile: ClusterProfile | None):
    """``on(task, name, gpu=False)``: give a pipeline task its display name ``name`` (the component's step name)
    and schedule it per ``profile`` (``apply``); the pipelines build every task through it."""
    def on(task, name: str, gpu: bool = False):
        return apply(task.set_display_name(name), profile, name, gpu)

    return on


def sharded(on, profile: ClusterProfile | None, plan, shard_step, merge_step, name: str, shards, inputs: dict):
    """A conversion in shards: ``plan`` (the shard indices), a ParallelFor over them of ``shard_step(shard=...,
    shards=..., **inputs)`` (at most the profile's ``shard_parallelism`` at once, each retried alone on failure), and
    ``merge_step(parts=<every shard's output>, **inputs)`` named ``name``; returns the merge task."""
    from kfp import dsl

    with dsl.ParallelFor(plan.output, parallelism=(profile or ClusterProfile("")).shard_parallelism) as shard:
        part = on(shard_step(shard=shard, shards=shards, **inputs), f"{name}-shard")
        part.set_retry(num_retries=SHARD_RETRIES)
    return on(merge_step(parts=dsl.Collected(part.outputs["part"]), **inputs), name)


def converted(on, profile: ClusterProfile | None, shards=1, **inputs):
    """KITTI -> COCO in shards (components/convert): the merged ``convert`` task, whose ``dataset`` is the dataset."""
    from admlops.components.convert.component import convert, convert_shard, shard_plan

    plan = on(shard_plan(data_format="kitti", shards=shards), "convert-plan")
    return sharded(on, profile, plan, convert_shard, convert, "convert", shards, inputs)
