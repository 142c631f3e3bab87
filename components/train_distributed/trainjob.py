"""Run one training step as a Kubeflow Trainer v2.3 TrainJob and wait for it like a blocking call.

``render_trainjob`` builds the object (``trainer.kubeflow.org/v1alpha1``) from the Trainer's own typed models,
``kubeflow-trainer-api`` of the same release (pinned in admlops/pins.py): a field of the wrong type is a pydantic
ValidationError and a field the API does not have a TypeError, when it is rendered rather than when the cluster
refuses it (tests/test_trainjob.py also validates the result against the v2.3.0 CRD). ``run_trainjob`` creates
it, streams node 0's log, waits for a terminal condition and always deletes it.
Unlike the Kubeflow SDK's wait helper, a Failed TrainJob, a timeout or a TrainJob deleted underneath raise
``TrainJobFailed``, whose message carries the condition, the pods' container states and recent Events.

How Trainer v2 reports progress (pkg/apis/trainer/v1alpha1/trainjob_types.go and the JobSet plugin):
``status.conditions`` holds ``Suspended``, ``Complete`` and ``Failed``; Complete and Failed are copied
from the JobSet (reasons ``AllJobsCompleted``; ``FailedJobs``, ``ReachedMaxRestarts``) or set by the
Trainer itself (``DeadlineExceeded``, ``TrainingRuntimeNotSupported``). ``status.jobsStatus`` counts child
Jobs per replicated job. The trainer nodes are one Indexed Job of the replicated job ``node``; its pods
carry JobSet's ``jobset.sigs.k8s.io/jobset-name`` / ``replicatedjob-name`` labels and the Job controller's
completion index (rank 0 is index 0).
"""
from __future__ import annotations

import hashlib
import json
import re
import signal
import threading
import time
from datetime import datetime, timezone
from typing import Callable

from kubeflow_trainer_api import models as api

from admlops.errors import StepFailed

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
NODE = "node"  # the torch runtimes' replicated job and trainer container
SHM_VOLUME = "dshm"
PATCH_MANAGER = "admlops/train-distributed"  # our entry in spec.runtimePatches
# Env var -> key in the S3 Secret; the endpoint is optional (plain AWS needs none).
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": False, "AWS_SECRET_ACCESS_KEY": False, "AWS_ENDPOINT_URL": True}
# The JobSet webhook rejects a JobSet whose generated pod names (<name>-<job>-<i>-<rank>-xxxxx) exceed 63
# characters; 32 leaves room for the longest built-in replicated job ("dataset-initializer") as well.
MAX_NAME_LEN = 32
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
JOBSET_NAME, RJOB_NAME = "jobset.sigs.k8s.io/jobset-name", "jobset.sigs.k8s.io/replicatedjob-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # a label since Kubernetes 1.28, an annotation before
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
TRANSIENT_STATUS = {429, 500, 502, 503, 504}


class TrainJobFailed(StepFailed):
    """The TrainJob failed, timed out, vanished, or could not be created; the message says why (exit 4)."""


def trainjob_name(run_id: str, step: str = "train") -> str:
    """A DNS-1035 label of at most MAX_NAME_LEN characters, the same for the same (run, step): readable
    ``<step>-<run id>`` trimmed, plus a hash of both so truncation never makes two runs collide."""
    if not run_id:
        raise ValueError("expected a pipeline run id, got an empty string")
    digest = hashlib.sha256(f"{run_id}\0{step}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", f"{step}-{run_id}".lower()).strip("-")
    if not slug[:1].isalpha():
        slug = f"tj-{slug}"
    return f"{slug[:MAX_NAME_LEN - len(digest) - 1].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    """``value`` as a valid label value: at most 63 of [A-Za-z0-9._-], starting and ending alphanumeric."""
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", re.sub(r"[^A-Za-z0-9._-]+", "-", str(value))[:63])


def render_trainjob(name: str, namespace: str, image: str, command: list[str], num_nodes: int, procs_per_node: int,
                    resources_per_node: dict, env: dict[str, str], s3_secret: str | None,
                    runtime: str = "torch-distributed", shm_size: str = "16Gi", labels: dict | None = None,
                    active_deadline_s: int | None = None) -> dict:
    """The TrainJob for ``command`` on ``num_nodes`` nodes of ``procs_per_node`` processes each.

    ``resources_per_node`` become both requests and limits (GPUs require that), numbers as strings (``"8"``).
    S3 credentials come only from the Secret ``s3_secret`` (keys named like the variables, see S3_SECRET_KEYS),
    never as values.
    /dev/shm is a Memory emptyDir of ``shm_size`` (the container default of 64 MiB starves DataLoader workers
    and NCCL), added through ``spec.runtimePatches``, the v2.2+ replacement of podTemplateOverrides.
    ``active_deadline_s`` makes the cluster stop the job even if whoever waits for it dies.
    """
    if len(name) > MAX_NAME_LEN or not DNS1035.match(name):
        raise ValueError(f"expected a DNS-1035 name of at most {MAX_NAME_LEN} characters, got {name!r}")
    if num_nodes < 1 or procs_per_node < 1:
        raise ValueError(f"expected num_nodes and procs_per_node >= 1, got {num_nodes} and {procs_per_node}")
    if clash := sorted(set(env) & set(S3_SECRET_KEYS)):
        raise ValueError(f"{', '.join(clash)} must come from the S3 Secret (s3_secret), not as plain env values")
    variables = [_new(api.IoK8sApiCoreV1EnvVar, name=k, value=str(v)) for k, v in env.items()]
    if s3_secret:
        variables += [_new(api.IoK8sApiCoreV1EnvVar, name=var, value_from=_new(
            api.IoK8sApiCoreV1EnvVarSource, secret_key_ref=_new(
                api.IoK8sApiCoreV1SecretKeySelector, name=s3_secret, key=var, optional=optional)))
            for var, optional in S3_SECRET_KEYS.items()]
    labels = {k: label_value(v) for k, v in {"app.kubernetes.io/managed-by": "admlops", **(labels or {})}.items()}
    quantities = {k: _quantity(v) for k, v in resources_per_node.items()}
    pod_patch = _new(
        api.TrainerV1alpha1PodTemplatePatch,
        metadata=_new(api.IoK8sApimachineryPkgApisMetaV1ObjectMeta, labels=labels),
        spec=_new(
            api.TrainerV1alpha1PodSpecPatch,
            volumes=[_new(api.IoK8sApiCoreV1Volume, name=SHM_VOLUME, empty_dir=_new(
                api.IoK8sApiCoreV1EmptyDirVolumeSource, medium="Memory",
                size_limit=_quantity(shm_size)))],
            containers=[_new(api.TrainerV1alpha1ContainerPatch, name=NODE, volume_mounts=[
                _new(api.IoK8sApiCoreV1VolumeMount, name=SHM_VOLUME, mount_path="/dev/shm")])],
        ),
    )
    node_patch = _new(api.TrainerV1alpha1ReplicatedJobPatch, name=NODE, template=_new(
        api.TrainerV1alpha1JobTemplatePatch, spec=_new(api.TrainerV1alpha1JobSpecPatch, template=pod_patch)))
    spec = _new(
        api.TrainerV1alpha1TrainJobSpec,
        runtime_ref=_new(api.TrainerV1alpha1RuntimeRef, name=runtime, api_group=GROUP, kind="ClusterTrainingRuntime"),
        trainer=_new(
            api.TrainerV1alpha1Trainer, image=image, command=list(command), num_nodes=num_nodes,
            num_proc_per_node=procs_per_node,
            resources_per_node=_new(api.IoK8sApiCoreV1ResourceRequirements, limits=quantities, requests=dict(quantities)),
            env=variables,
        ),
        runtime_patches=[_new(api.TrainerV1alpha1RuntimePatch, manager=PATCH_MANAGER, training_runtime_spec=_new(
            api.TrainerV1alpha1TrainingRuntimeSpecPatch, template=_new(
                api.TrainerV1alpha1JobSetTemplatePatch, spec=_new(
                    api.TrainerV1alpha1JobSetSpecPatch, replicated_jobs=[node_patch]))))],
        active_deadline_seconds=int(active_deadline_s) if active_deadline_s else None,
    )
    return _new(api.TrainerV1alpha1TrainJob, api_version=f"{GROUP}/{VERSION}", kind="TrainJob", spec=spec,
                metadata=_new(api.IoK8sApimachineryPkgApisMetaV1ObjectMeta, name=name, namespace=namespace,
                              labels=labels)).to_dict()


def _quantity(value: int | float | str):
    """A resource quantity as Kubernetes writes one in JSON, a string: ``8`` -> ``"8"``. The model keeps a number
    as a float, and 8.0 is not the integer-or-string the CRD's schema allows."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return api.IoK8sApimachineryPkgApiResourceQuantity(str(value) if number else value)


def _new(model, **fields):
    """``model(**fields)`` for one of the Trainer API's models, refusing a field the model does not have (pydantic
    would drop it without a word, and the TrainJob would lack it). Fields go by their Python names."""
    if unknown := sorted(set(fields) - set(model.model_fields)):
        raise TypeError(f"{model.__name__} has no field {', '.join(unknown)}: expected some of "
                        f"{', '.join(model.model_fields)}")
    return model(**fields)


# -- status: pure decisions on the TrainJob object --------------------------------------------------------

def true_condition(obj: dict, kind: str) -> dict | None:
    """The condition of type ``kind`` when its status is "True", else None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def trainjob_state(obj: dict) -> str:
    """RUNNING, SUCCEEDED or FAILED. Failed wins over Complete; Suspended (e.g. queued by Kueue) is RUNNING."""
    if true_condition(obj, "Failed"):
        return FAILED
    return SUCCEEDED if true_condition(obj, "Complete") else RUNNING


def describe_status(obj: dict) -> str:
    """One line per condition and per replicated job, for error messages."""
    status = obj.get("status") or {}
    lines = [f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
             for c in status.get("conditions") or []]
    lines += [f"job {j.get('name')}: " + " ".join(f"{k}={j.get(k, 0)}" for k in ("active", "ready", "succeeded", "failed"))
              for j in status.get("jobsStatus") or []]
    return "\n".join(lines) or "no status reported yet"


# -- the cluster side -------------------------------------------------------------------------------------

def node0_pod(core, namespace: str, name: str):
    """The newest pod of rank 0 (after a JobSet restart there may be an older, terminating one), or None."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"{JOBSET_NAME}={name},{RJOB_NAME}={NODE}").items
    rank0 = [p for p in pods if {**(p.metadata.annotations or {}), **(p.metadata.labels or {})}.get(COMPLETION_INDEX) == "0"]
    return max(rank0, key=lambda p: p.metadata.creation_timestamp or datetime.min.replace(tzinfo=timezone.utc),
               default=None)


def _follow_log(core, namespace: str, pod: str, sink: Callable[[str], None]) -> None:
    """Pass the node container's log to ``sink`` line by line until the container ends."""
    resp = core.read_namespaced_pod_log(pod, namespace, container=NODE, follow=True, _preload_content=False)
    try:
        tail = b""
        for chunk in resp.stream(64 * 1024):
            *lines, tail = (tail + chunk).split(b"\n")
            for line in lines:
                sink(line.decode(errors="replace"))
        if tail:
            sink(tail.decode(errors="replace"))
    finally:
        resp.release_conn()


def _stream_logs(core, namespace: str, name: str, sink: Callable[[str], None], stop: threading.Event, poll_s: float):
    """Follow node 0's log until ``stop`` is set and nothing is left to read; each pod of rank 0 once (a
    container restarted in place is not followed again)."""
    seen: set[str] = set()
    while True:
        final = stop.is_set()
        try:
            pod = node0_pod(core, namespace, name)
            if pod is not None and pod.metadata.name not in seen and pod.status.phase != "Pending":
                seen.add(pod.metadata.name)
                _follow_log(core, namespace, pod.metadata.name, sink)
                continue  # look for a newer rank-0 pod at once
        except Exception as e:  # noqa: BLE001 - the log is best effort, never fatal
            sink(f"[train-distributed] log stream of {name}: {type(e).__name__}: {e}")
        if final:
            return
        stop.wait(poll_s)


def diagnose(core, namespace: str, name: str, max_events: int = 20) -> str:
    """Node containers' states and the recent Events of the TrainJob, its JobSet, Jobs and pods."""
    lines = []
    try:
        for pod in core.list_namespaced_pod(namespace, label_selector=f"{JOBSET_NAME}={name}").items:
            states = []
            for cs in pod.status.container_statuses or []:
                state = (cs.state.terminated or cs.state.waiting) if cs.state else None
                last = cs.last_state.terminated if cs.last_state else None  # e.g. OOMKilled before a restart
                states.append(f"{cs.name}: {getattr(state, 'reason', None) or 'running'}"
                              + (f", exit code {state.exit_code}" if getattr(state, "exit_code", None) is not None else "")
                              + (f", {cs.restart_count} restarts, last {last.reason} ({last.exit_code})" if last else ""))
            lines.append(f"  pod {pod.metadata.name} {pod.status.phase} ({'; '.join(states) or 'no containers'})")
        # The JobSet has the TrainJob's name; its Jobs and pods start with "<name>-".
        events = [e for e in core.list_namespaced_event(namespace).items
                  if e.involved_object.name == name or (e.involved_object.name or "").startswith(f"{name}-")]
        stamp = datetime.min.replace(tzinfo=timezone.utc)
        events.sort(key=lambda e: e.last_timestamp or e.event_time or e.first_timestamp or stamp)
        lines.append("recent events:" if events else "recent events: none")
        lines += [f"  {e.type} {e.involved_object.kind}/{e.involved_object.name} {e.reason}: {e.message}"
                  for e in events[-max_events:]]
    except Exception as e:  # noqa: BLE001 - diagnostics must not hide the original failure
        lines.append(f"(could not read pods/events: {type(e).__name__}: {e})")
    return "\n".join(lines)


def train_command(dataset_uri: str, out_uri: str, config: str, procs_per_node: int, run_id: str = "",
                  max_iters: int = 0, batch_size: int = 0, seed: int = 0, init_from: str = "",
                  init_store: str = "") -> list[str]:
    """What every node runs: the train CLI, which starts torchrun with the runtime's PET_* rendezvous variables.
    ``max_iters``/``batch_size`` (per process) of 0 keep the config's values, as the single-pod train step does.
    With ``run_id`` checkpoints also go to ``<out_uri>.checkpoints/``, so pods the JobSet restarts resume, and W&B
    groups the run's logs (offline unless the image's environment sets WANDB_MODE). ``init_from``: the model to
    start from (a zoo model in ``init_store``, the lake's store, or a checkpoint path the nodes can read)."""
    cmd = ["admlops", "train", dataset_uri, out_uri, "--config", config, "--nproc", str(procs_per_node), "--seed", str(seed)]
    cmd += ["--max-iters", str(max_iters)] if max_iters else []
    cmd += ["--batch-size", str(batch_size)] if batch_size else []
    cmd += ["--init-from", init_from] if init_from else []
    cmd += ["--init-store", init_store] if init_from and init_store else []
    return cmd + (["--store", f"{out_uri.rstrip('/')}.checkpoints", "--run-id", run_id, "--wandb"] if run_id else [])


def object_uri(uri: str) -> str:
    """An artifact URI as the object store reads it: KFP's ``minio://bucket/key`` is ``s3://bucket/key`` at the
    endpoint in AWS_ENDPOINT_URL."""
    return "s3://" + uri[len("minio://"):] if uri.startswith("minio://") else uri


def _api_message(e) -> str:
    try:
        return f"{e.status} {json.loads(e.body).get('message')}"
    except (TypeError, ValueError, AttributeError):
        return f"{e.status} {e.reason}"


def _default_api_client():
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def current_namespace(default: str = "kubeflow") -> str:
    """The namespace this pod runs in (its service account's), else ``default``."""
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or default
    except OSError:
        return default


def run_trainjob(obj: dict, namespace: str, timeout_s: float, poll_s: float = 10, api=None,
                 log_sink: Callable[[str], None] = print) -> dict:
    """Create ``obj``, stream node 0's log to ``log_sink`` and wait for Complete; return the final TrainJob.

    Raises TrainJobFailed on a Failed condition, after ``timeout_s``, when the TrainJob disappears (404), on
    SIGTERM (a cancelled pipeline run) and when the API refuses it. Transient API errors (429, 5xx,
    connection errors) are retried until the timeout. The TrainJob is deleted in every case, which frees the
    GPUs. ``api`` is a kubernetes ``ApiClient`` (default: in-cluster config, else kubeconfig).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = api or _default_api_client()
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    name, where = obj["metadata"]["name"], f"TrainJob {namespace}/{obj['metadata']['name']}"
    stop = threading.Event()
    follower = threading.Thread(target=_stream_logs, args=(core, namespace, name, log_sink, stop, poll_s), daemon=True)
    created = gone = finished = False
    handles_sigterm = threading.current_thread() is threading.main_thread()  # only there can Python catch it
    if handles_sigterm:
        def on_sigterm(signum, frame):
            raise TrainJobFailed(f"{where}: terminated (SIGTERM) while waiting; the TrainJob is being deleted")
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj, _request_timeout=60)
        except ApiException as e:
            hint = " (a previous attempt still exists: wait for it to go or delete it)" if e.status == 409 else ""
            raise TrainJobFailed(f"could not create {where}: {_api_message(e)}{hint}") from e
        created = True
        log_sink(f"[train-distributed] created {where}; waiting up to {timeout_s:g} s")
        follower.start()
        deadline, current = time.monotonic() + timeout_s, obj
        while True:
            try:
                current = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, _request_timeout=60)
            except ApiException as e:
                if e.status == 404:
                    gone = True
                    raise TrainJobFailed(f"{where} was deleted while running\n{diagnose(core, namespace, name)}") from e
                if e.status not in TRANSIENT_STATUS:
                    raise TrainJobFailed(f"could not read {where}: {_api_message(e)}") from e
                log_sink(f"[train-distributed] reading {where}: {_api_message(e)}; retrying")
            except HTTPError as e:
                log_sink(f"[train-distributed] reading {where}: {e}; retrying")
            else:
                state = trainjob_state(current)
                finished = state != RUNNING
                if state == SUCCEEDED:
                    log_sink(f"[train-distributed] {where} complete")
                    return current
                if state == FAILED:
                    raise TrainJobFailed(f"{where} failed:\n{describe_status(current)}\n{diagnose(core, namespace, name)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TrainJobFailed(f"{where} did not finish within {timeout_s:g} s:\n{describe_status(current)}\n"
                                     f"{diagnose(core, namespace, name)}")
            time.sleep(min(poll_s, remaining))
    finally:
        if handles_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        stop.set()
        if follower.is_alive():  # a finished node's log ends by itself: let the rest through
            follower.join(timeout=30 if finished else 2)
        if created and not gone:
            try:
                custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                       propagation_policy="Background", _request_timeout=60)
                log_sink(f"[train-distributed] deleted {where}")
            except ApiException as e:
                if e.status != 404:
                    log_sink(f"[train-distributed] could not delete {where}: {_api_message(e)}; delete it by hand")
            except HTTPError as e:
                log_sink(f"[train-distributed] could not delete {where}: {e}; delete it by hand")
        if handles_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
