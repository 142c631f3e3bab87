"""Run and publish pipelines on a Kubeflow Pipelines cluster through ``kfp.Client`` (the v2beta1 REST API).

``submit`` compiles a pipeline, starts a run in an experiment and, with ``wait``, follows it to its end:
a run that does not end SUCCEEDED raises :class:`RunFailed` (exit code 4) naming the failed tasks and
their errors. ``upload`` publishes the compiled pipeline as a new version, creating the pipeline first
when the cluster does not have it yet.

Credentials: kfp.Client's own chain (a port-forwarded or in-cluster endpoint needs none; the kube
config; ``~/.config/kfp/context.json`` cookies), plus a bearer token from ``$ADMLOPS_KFP_TOKEN``
(e.g. ``kubectl create token``, or an OIDC id token for a Kubeflow behind oauth2-proxy/Dex) or from the
file ``$KF_PIPELINES_SA_TOKEN_PATH`` names (a projected service-account token, re-read on each request,
as KFP's in-cluster clients do). The token goes into the Authorization header only: never printed,
logged or put into an error message.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from admlops.errors import InputError, ServiceError, StepFailed, UsageError
from admlops.pipelines.registry import PIPELINES, check_params, compile_pipeline

TOKEN_ENV = "ADMLOPS_KFP_TOKEN"
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp's own variable (kfp.client.KF_PIPELINES_SA_TOKEN_ENV)
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")


class RunFailed(StepFailed):
    """A submitted run ended in a state other than SUCCEEDED (exit code 4, like a failed local run)."""

    def __init__(self, message: str, run_id: str = "", state: str = ""):
        super().__init__(message)
        self.run_id = run_id
        self.state = state


class RunTimedOut(RunFailed):
    """``submit(wait=True)`` gave up before the run ended; the run goes on on the cluster."""


class KfpApiError(ServiceError):
    """The KFP API refused a request or could not be reached; the message names the host and the cause (exit 6)."""


def connect(host: str | None, namespace: str | None = None):
    """A ``kfp.Client`` for ``host`` (None: kfp's own resolution, ``$KF_PIPELINES_ENDPOINT``, in-cluster or
    the kube config) with the credentials the module docstring lists."""
    import kfp

    kwargs = {}
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        kwargs["existing_token"] = token
    elif os.environ.get(SA_TOKEN_PATH_ENV):
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(os.environ[SA_TOKEN_PATH_ENV])
    where = _where(host)
    with warnings.catch_warnings(), _api(where):
        warnings.filterwarnings("ignore", message="This client only works with", category=FutureWarning)
        try:
            return kfp.Client(host=host or None, namespace=namespace or "kubeflow", **kwargs)
        except TimeoutError as exc:  # without a namespace the client asks /healthz, 5 tries 5 s apart
            raise KfpApiError(f"KFP API at {where}: {exc} (check the host and the token)") from None


def _where(host: str | None) -> str:
    return host or os.environ.get("KF_PIPELINES_ENDPOINT") or "the default KFP endpoint (in-cluster or kube config)"


@contextlib.contextmanager
def _api(host: str) -> Iterator[None]:
    """Turn the REST client's exceptions into a KfpApiError that says what went wrong, without headers."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as exc:
        body = (exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or "")).strip()
        with contextlib.suppress(ValueError, AttributeError):
            body = json.loads(body).get("message") or body  # the grpc-gateway error's message
        hint = {401: " (no or an expired token: set $ADMLOPS_KFP_TOKEN)", 403: " (the identity lacks access to this "
                "namespace: check --namespace and the profile's contributors)"}.get(exc.status, "")
        raise KfpApiError(f"KFP API at {host}: HTTP {exc.status} {exc.reason}{hint}: {body[:1000]}") from None
    except urllib3.exceptions.HTTPError as exc:
        raise KfpApiError(f"cannot reach the KFP API at {host}: {exc}") from None


@contextlib.contextmanager
def pipeline_package(pipeline: str, profile: str | None = None) -> Iterator[tuple[str, Path]]:
    """(name, compiled YAML) for a pipeline in the registry (compiled now, so it is what the code says) or
    for a path to an already compiled pipeline YAML."""
    import yaml

    if pipeline in PIPELINES:
        with tempfile.TemporaryDirectory(prefix="admlops-kfp-") as tmp:
            yield pipeline, compile_pipeline(pipeline, tmp, profile)
        return
    path = Path(pipeline)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise UsageError(f"pipeline {pipeline!r}: expected one of {', '.join(sorted(PIPELINES))} or a compiled "
                         "pipeline .yaml file")
    spec = next(yaml.safe_load_all(path.read_text()), None) or {}
    name = spec.get("pipelineInfo", {}).get("name")
    if not name:
        raise InputError(path, "not a compiled KFP pipeline (no pipelineInfo.name in its first document)")
    yield name, path


def ui_url(host: str | None, fragment: str) -> str:
    """A page of the KFP UI: ``$KF_PIPELINES_UI_ENDPOINT`` or the API host (both served by ml-pipeline-ui)."""
    base = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or host or os.environ.get("KF_PIPELINES_ENDPOINT") or ""
    if base and not base.startswith(("http://", "https://")):
        base = "https://" + base
    return f"{base.rstrip('/') or '/pipeline'}/#/{fragment}"


def submit(pipeline: str, host: str | None, params: dict, namespace: str | None = None, experiment: str = "Default",
           run_name: str | None = None, wait: bool = False, timeout_s: int = 24 * 3600, client=None,
           poll_s: float = 10.0, profile: str | None = None) -> dict:
    """Compile ``pipeline`` and start a run with ``params`` in ``experiment`` (created if missing).

    Returns ``{run_id, url, state}``. With ``wait``, polls until the run ends; a final state other than
    SUCCEEDED raises :class:`RunFailed`, and ``timeout_s`` without an end raises :class:`RunTimedOut`.
    """
    if pipeline in PIPELINES:  # a compiled file: the server checks
        check_params(pipeline, params)
    with pipeline_package(pipeline, profile) as (name, package):
        client = client or connect(host, namespace)
        run_name = run_name or f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        with _api(_where(host)):
            result = client.create_run_from_pipeline_package(str(package), arguments=params, run_name=run_name,
                                                             experiment_name=experiment, namespace=namespace or None)
    run_id = result.run_id
    url = ui_url(host, f"runs/details/{run_id}")
    state = _state(result.run_info) or "PENDING"
    if wait:
        run = wait_for_run(client, run_id, timeout_s, poll_s, host, url)
        state = _state(run)
        if state != "SUCCEEDED":
            raise RunFailed(f"run {run_name} ({run_id}) ended {state}: {describe_failure(run)}; see {url}", run_id,
                            state)
    return {"run_id": run_id, "url": url, "state": state}


def _state(run) -> str:
    return str(run.state) if run is not None and run.state else ""


def wait_for_run(client, run_id: str, timeout_s: float, poll_s: float = 10.0, host: str | None = None,
                 url: str = ""):
    """Poll the run until it is in a terminal state; returns the final ``V2beta1Run``.

    Not ``Client.wait_for_run_completion``: in kfp 2.17 that one never returns for a CANCELED run (it
    waits for succeeded/failed/skipped/error only) and raises a bare TimeoutError.
    """
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        with _api(_where(host)):
            run = client.get_run(run_id)
        state = _state(run)
        if state != last:
            print(f"run {run_id}: {state or 'RUNTIME_STATE_UNSPECIFIED'}", file=sys.stderr, flush=True)
            last = state
        if state in TERMINAL_STATES:
            return run
        if time.monotonic() >= deadline:
            raise RunTimedOut(f"run {run_id} is still {state or 'pending'} after {timeout_s:g} s; it goes on on the "
                              f"cluster: {url or run_id}", run_id, state)
        time.sleep(poll_s)


def describe_failure(run) -> str:
    """The run's error, then the failed tasks' errors (or names), in one line."""
    parts = []
    if run.error is not None and run.error.message:
        parts.append(run.error.message.strip())
    tasks = (run.run_details.task_details or []) if run.run_details else []
    failed = [t for t in tasks if str(t.state or "") in ("FAILED", "CANCELED")]
    messages = [f"task {t.display_name or t.task_id}: {t.error.message.strip()}"
                for t in failed if t.error is not None and t.error.message]
    names = sorted({t.display_name or t.task_id for t in failed})
    parts += messages or ([f"failed tasks: {', '.join(names)}"] if names else [])
    if not parts:
        for status in reversed(run.state_history or []):
            if status.error is not None and status.error.message:
                parts.append(status.error.message.strip())
                break
    return "; ".join(dict.fromkeys(parts)) or "the server gave no error message (see the run's task logs in the UI)"


def upload(pipeline: str, host: str | None, version: str, namespace: str | None = None,
           description: str | None = None, client=None, profile: str | None = None) -> dict:
    """Publish ``pipeline`` as version ``version``; the pipeline itself is created first if the cluster has
    none of that name (KFP then also gives it an initial version named after the pipeline).

    Returns ``{pipeline_id, pipeline_version_id, name, version, created_pipeline, url}``.
    """
    from admlops.pipelines.k8s_manifest import check_version_name

    check_version_name(version)
    with pipeline_package(pipeline, profile) as (name, package), _api(_where(host)):
        client = client or connect(host, namespace)
        pipeline_id = find_pipeline(client, name, namespace)
        created = pipeline_id is None
        if created:
            pipeline_id = client.upload_pipeline(str(package), pipeline_name=name, description=description,
                                                 namespace=namespace or None).pipeline_id
        pv = client.upload_pipeline_version(str(package), pipeline_version_name=version, pipeline_id=pipeline_id,
                                            description=description)
    return {"pipeline_id": pipeline_id, "pipeline_version_id": pv.pipeline_version_id, "name": name,
            "version": version, "created_pipeline": created,
            "url": ui_url(host, f"pipelines/details/{pipeline_id}/version/{pv.pipeline_version_id}")}


def find_pipeline(client, name: str, namespace: str | None = None) -> str | None:
    """The id of the pipeline called ``name`` in ``namespace`` (None: shared pipelines), or None.

    ``Client.get_pipeline_id`` lists shared pipelines only, so it misses a multi-user profile's own."""
    # the filter kfp's own get_pipeline_id sends (operation 1 = EQUALS)
    flt = json.dumps({"predicates": [{"operation": 1, "key": "display_name", "stringValue": name}]})
    found = client.list_pipelines(filter=flt, namespace=namespace or None, page_size=2).pipelines or []
    if len(found) > 1:
        raise KfpApiError(f"{len(found)} pipelines are called {name!r}{f' in {namespace}' if namespace else ''}: "
                          "delete or rename one")
    return found[0].pipeline_id if found else None
