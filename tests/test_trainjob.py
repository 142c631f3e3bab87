"""The train-distributed step: the TrainJob it renders, validated against Kubeflow Trainer v2.3.0's CRD, and how
``run_trainjob`` waits, fails and cleans up on recorded TrainJob runs (tests/data/trainjob/), driven through the
real kubernetes client against a small API server on 127.0.0.1."""

import copy
import functools
import json
import os
import re
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from admlops.components.train_distributed import trainjob as tj
from admlops.components.train_distributed.trainjob import (
    FAILED, RUNNING, SUCCEEDED, TrainJobFailed, render_trainjob, run_trainjob, trainjob_name, trainjob_state,
)
from admlops.errors import StepFailed

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO.parent / "shared" / "schemas" / "kubeflow-trainer-v2.3.0"
DATA = Path(__file__).parent / "data" / "trainjob"
RUN_ID = "3c1e5a8e-7d4b-4b0e-9f55-2f0a3c9d1e77"  # a KFP run UUID
NAME, NS = trainjob_name(RUN_ID), "ml"
FAKE_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def render(**overrides) -> dict:
    args = dict(
        name=NAME, namespace=NS, image="ghcr.io/admlops/gpu:0.1.0",
        command=tj.train_command("s3://lake/datasets/kitti/v1/", "s3://mlpipeline/v2/artifacts/run/model", "rtmdet_tiny_kitti", 8),
        num_nodes=2, procs_per_node=8, resources_per_node={"nvidia.com/gpu": 8, "cpu": "32", "memory": "256Gi"},
        env={"PYTHONUNBUFFERED": "1"}, s3_secret="admlops-s3", labels={"admlops/run-id": RUN_ID}, active_deadline_s=4200,
    )
    return render_trainjob(**{**args, **overrides})


# -- names ------------------------------------------------------------------------------------------------

def test_trainjob_name_is_a_short_stable_dns1035_label():
    dns1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    odd = [RUN_ID, "RUN_42", "7" * 200, "--x--", "détente/ü", "a"]
    names = [trainjob_name(r) for r in odd] + [trainjob_name(RUN_ID, "finetune"), trainjob_name("pipeline-run-x", "ÉVAL")]
    for name in names:
        assert dns1035.match(name) and len(name) <= tj.MAX_NAME_LEN, name
        # JobSet rejects names whose generated pod names (<name>-<job>-<i>-<rank>-xxxxx) exceed 63 characters.
        assert len(f"{name}-node-0-9999-abcde") <= 63 and len(f"{name}-dataset-initializer-0-0-abcde") <= 63
    assert len(set(names)) == len(names)
    assert trainjob_name(RUN_ID) == NAME and NAME.startswith("train-3c1e5a8e")
    assert trainjob_name("7" * 200) != trainjob_name("7" * 199)  # truncation does not merge runs
    with pytest.raises(ValueError, match="run id"):
        trainjob_name("")


# -- the rendered object against the CRDs -----------------------------------------------------------------

def _strict(node):
    """A CRD's structural schema as jsonschema reads it: unknown fields rejected (kubectl --validate=strict;
    the API server would silently prune them), int-or-string as anyOf."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _strict(v) for k, v in node.items()}
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    return node


def _list_type(validator, kind, instance, schema):
    """x-kubernetes-list-type: "map" entries are unique by their keys, "set" entries unique."""
    from jsonschema import ValidationError

    if not isinstance(instance, list):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen = set()
    for item in instance:
        key = json.dumps([item.get(k) for k in keys] if kind == "map" and isinstance(item, dict) else item, sort_keys=True)
        if kind in ("map", "set") and key in seen:
            yield ValidationError(f"duplicate entry {key} in a list of type {kind}")
        seen.add(key)


@functools.cache
def crd_schema(crd_file: str, version: str) -> tuple:
    """The version's openAPIV3Schema and a validator for it."""
    import jsonschema

    crd = yaml.load((SCHEMAS / crd_file).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (spec,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = spec["schema"]["openAPIV3Schema"]
    validator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type})
    return schema, validator(_strict(schema))


def crd_validate(crd_file: str, obj: dict) -> list[str]:
    """Every error the CRD's openAPIV3Schema finds in ``obj``, plus its top-level CEL rules on metadata.name
    (the only ones a create can break; each is parsed from the CRD, and an unknown rule fails the test)."""
    schema, validator = crd_schema(crd_file, obj["apiVersion"].split("/")[1])
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    name = obj["metadata"]["name"]
    for rule in schema.get("x-kubernetes-validations", []):
        if m := re.fullmatch(r"self\.metadata\.name\.matches\('(.+)'\)", rule["rule"]):
            ok = re.match(m[1], name) is not None
        elif m := re.fullmatch(r"size\(self\.metadata\.name\) <= (\d+)", rule["rule"]):
            ok = len(name) <= int(m[1])
        else:
            raise AssertionError(f"unknown CEL rule in {crd_file}: {rule['rule']}")
        errors += [] if ok else [f"metadata.name: {rule['message']}"]
    return errors


@pytest.fixture(scope="module")
def schemas() -> Path:
    if not (SCHEMAS / "trainer.kubeflow.org_trainjobs.yaml").is_file():
        pytest.skip(f"Kubeflow Trainer v2.3.0 CRDs not found at {SCHEMAS} (they live in the shared workspace only)")
    return SCHEMAS


def test_validator_accepts_the_shipped_torch_runtime(schemas):
    text = "\n".join(line for line in (schemas / "torch-distributed-runtime.yaml").read_text().splitlines()
                     if "{{" not in line)  # the Helm template lines
    runtime = yaml.safe_load(text)
    assert crd_validate("trainer.kubeflow.org_clustertrainingruntimes.yaml", runtime) == []
    # The names render_trainjob relies on: the replicated job and the trainer container are both "node".
    (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == tj.NODE and [c["name"] for c in rjob["template"]["spec"]["template"]["spec"]["containers"]] == [tj.NODE]
    assert runtime["metadata"]["name"] == "torch-distributed"


def test_rendered_trainjob_validates_against_the_crd(schemas):
    assert crd_validate("trainer.kubeflow.org_trainjobs.yaml", render()) == []
    assert crd_validate("trainer.kubeflow.org_trainjobs.yaml", render(s3_secret=None, resources_per_node={},
                                                                      active_deadline_s=None, num_nodes=1)) == []


@pytest.mark.parametrize("change, expected", [
    (lambda o: o["spec"]["trainer"].update(numNodes="two"), "spec.trainer.numNodes: 'two' is not of type 'integer'"),
    (lambda o: o["spec"].update(podTemplateOverrides=[{"targetJobs": [{"name": "node"}]}]),  # removed in v2.2
     "Additional properties are not allowed ('podTemplateOverrides' was unexpected)"),
    (lambda o: o["spec"]["trainer"]["env"].append({"name": "PYTHONUNBUFFERED", "value": "0"}), "duplicate entry"),
    (lambda o: o["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]
     ["spec"]["template"]["spec"]["volumes"][0]["emptyDir"].update(sizeLimit="lots"), "does not match"),
    (lambda o: o["metadata"].update(name="Train_42"), "metadata.name must match RFC 1035 DNS label format"),
    (lambda o: o["metadata"].update(name="t" * 64), "metadata.name must be no more than 63 characters"),
])
def test_validator_rejects_a_wrong_trainjob(schemas, change, expected):
    obj = render()
    change(obj)
    errors = crd_validate("trainer.kubeflow.org_trainjobs.yaml", obj)
    assert any(expected in e for e in errors), errors


# -- what the rendered object says ------------------------------------------------------------------------

def test_credentials_come_only_from_the_secret(monkeypatch):
    for key, value in FAKE_KEYS.items():
        monkeypatch.setenv(key, value)  # present where it renders, as in a component pod
    obj = render()
    text = yaml.safe_dump(obj)
    assert not any(value in text for value in FAKE_KEYS.values())
    env = {e["name"]: e for e in obj["spec"]["trainer"]["env"]}
    for var, optional in {"AWS_ACCESS_KEY_ID": False, "AWS_SECRET_ACCESS_KEY": False, "AWS_ENDPOINT_URL": True}.items():
        assert "value" not in env[var]
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "admlops-s3", "key": var, "optional": optional}
    assert env["PYTHONUNBUFFERED"] == {"name": "PYTHONUNBUFFERED", "value": "1"}
    with pytest.raises(ValueError, match="AWS_SECRET_ACCESS_KEY must come from the S3 Secret"):
        render(env={"AWS_SECRET_ACCESS_KEY": FAKE_KEYS["AWS_SECRET_ACCESS_KEY"]})
    assert not any(e["name"].startswith("AWS_") for e in render(s3_secret=None)["spec"]["trainer"]["env"])


def test_dev_shm_is_a_memory_emptydir_on_the_node_container():
    (patch,) = render(shm_size="32Gi")["spec"]["runtimePatches"]
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node"
    pod = rjob["template"]["spec"]["template"]["spec"]
    (volume,) = pod["volumes"]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    (container,) = pod["containers"]
    assert container["name"] == "node" and "env" not in container  # the Trainer forbids env patches on "node"
    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/dev/shm"}]


def test_trainer_spec_and_runtime_ref():
    obj = render()
    assert obj["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and obj["kind"] == "TrainJob"
    assert obj["spec"]["runtimeRef"] == {"name": "torch-distributed", "apiGroup": "trainer.kubeflow.org",
                                         "kind": "ClusterTrainingRuntime"}
    trainer = obj["spec"]["trainer"]
    assert trainer["command"] == ["admlops", "train", "s3://lake/datasets/kitti/v1/", "s3://mlpipeline/v2/artifacts/run/model",
                                  "--config", "rtmdet_tiny_kitti", "--nproc", "8", "--seed", "0"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 8)
    assert trainer["resourcesPerNode"]["limits"] == trainer["resourcesPerNode"]["requests"] == {
        "nvidia.com/gpu": "8", "cpu": "32", "memory": "256Gi"}  # a quantity as Kubernetes writes it, a string
    assert obj["spec"]["activeDeadlineSeconds"] == 4200
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "admlops", "admlops/run-id": RUN_ID}
    with pytest.raises(ValueError, match="num_nodes"):
        render(num_nodes=0)
    with pytest.raises(ValueError, match="DNS-1035"):
        render(name="x" * 40)


def test_rendered_from_the_trainer_api_models():
    """render_trainjob builds the object with kubeflow-trainer-api's models: all of it is theirs (nothing added
    beside them), a value of the wrong type fails when it is rendered, and a field they lack is refused."""
    from kubeflow_trainer_api.models import TrainerV1alpha1Trainer, TrainerV1alpha1TrainJob
    from pydantic import ValidationError

    obj = render()
    assert TrainerV1alpha1TrainJob.from_dict(obj).to_dict() == obj
    assert render(s3_secret=None, active_deadline_s=None, resources_per_node={})["spec"]["trainer"]["resourcesPerNode"] == {
        "limits": {}, "requests": {}}
    cpu = render(resources_per_node={"cpu": 0.5, "memory": "1Gi"})["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert json.dumps(cpu) == '{"cpu": "0.5", "memory": "1Gi"}'  # the model's 0.5 (or 8.0) is no int-or-string
    with pytest.raises(ValidationError, match="num_proc_per_node"):
        render(procs_per_node=2.5)
    with pytest.raises(ValidationError, match=r"command\.1"):
        render(command=["admlops", 3])
    with pytest.raises(TypeError, match="TrainerV1alpha1Trainer has no field num_node: expected some of .*num_nodes"):
        tj._new(TrainerV1alpha1Trainer, num_node=2)


# -- status decisions on the recorded sequences -----------------------------------------------------------

def load_scenario(name: str) -> dict:
    return yaml.safe_load(Template((DATA / f"{name}.yaml").read_text()).substitute(name=NAME))


def test_state_of_recorded_statuses():
    states = {s: [trainjob_state(e) for e in load_scenario(s)["statuses"] if "code" not in e]
              for s in ("succeeded", "failed", "timeout", "deleted")}
    assert states == {"succeeded": [RUNNING] * 3 + [SUCCEEDED], "failed": [RUNNING, FAILED],
                      "timeout": [RUNNING], "deleted": [RUNNING]}
    both = {"status": {"conditions": [{"type": "Complete", "status": "True"}, {"type": "Failed", "status": "True"}]}}
    assert trainjob_state(both) == FAILED
    queued = {"status": {"conditions": [{"type": "Suspended", "status": "True", "reason": "Suspended"}]}}
    assert trainjob_state(queued) == RUNNING
    assert trainjob_state({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}) == RUNNING


# -- run_trainjob against a recording API server ----------------------------------------------------------

class FakeApiServer:
    """Serves one recorded scenario on the paths the kubernetes client calls, and records every request."""

    def __init__(self, scenario: str, create_code: int = 201):
        data = load_scenario(scenario)
        self.statuses, self.pods, self.logs, self.events = data["statuses"], data["pods"], data["logs"], data["events"]
        self.create_code, self.created, self.gets = create_code, None, 0
        self.requests: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()

    def __enter__(self):
        from kubernetes import client

        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self, "GET")

            def do_POST(self):
                server.handle(self, "POST")

            def do_DELETE(self):
                server.handle(self, "DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()
        config = client.Configuration()
        config.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.api = client.ApiClient(config)
        return self

    def __exit__(self, *exc):
        self.api.close()
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, method: str, path_end: str = f"/trainjobs/{NAME}") -> int:
        return sum(m == method and p.endswith(path_end) for m, p, _ in self.requests)

    @staticmethod
    def _status(code: int, reason: str, message: str) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                "reason": reason, "code": code, "details": {"name": NAME, "group": "trainer.kubeflow.org", "kind": "trainjobs"}}

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self.lock:
            self.requests.append((method, url.path, query))
            code, payload = self.route(method, url.path, query, body)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        h.send_response(code)
        h.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def route(self, method: str, path: str, query: dict, body: bytes):
        trainjobs = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs"
        if method == "POST" and path == trainjobs:
            if self.create_code != 201:
                return self.create_code, self._status(self.create_code, "AlreadyExists",
                                                      f'trainjobs.trainer.kubeflow.org "{NAME}" already exists')
            self.created = json.loads(body)
            self.created["metadata"].update(uid="6f1f0c7e-2b1a-4d55-9c1e-0d9a8b7c6e5f", resourceVersion="1001",
                                            creationTimestamp="2026-11-23T10:12:00Z")
            return 201, self.created
        if path == f"{trainjobs}/{NAME}" and method == "GET":
            entry = self.statuses[min(self.gets, len(self.statuses) - 1)]
            self.gets += 1
            if "code" in entry:
                reason = {404: "NotFound", 503: "ServiceUnavailable"}[entry["code"]]
                return entry["code"], self._status(entry["code"], reason, f'trainjobs.trainer.kubeflow.org "{NAME}" {reason}')
            return 200, {**copy.deepcopy(self.created), **({"status": entry["status"]} if "status" in entry else {})}
        if path == f"{trainjobs}/{NAME}" and method == "DELETE":
            return 200, self.created
        if path == f"/api/v1/namespaces/{NS}/pods" and method == "GET":
            wanted = dict(kv.split("=", 1) for kv in query.get("labelSelector", "").split(",") if kv)
            items = [p for p in self.pods if wanted.items() <= (p["metadata"].get("labels") or {}).items()]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}
        if (m := re.fullmatch(rf"/api/v1/namespaces/{NS}/pods/([^/]+)/log", path)) and m[1] in self.logs:
            return 200, self.logs[m[1]]
        if path == f"/api/v1/namespaces/{NS}/events" and method == "GET":
            return 200, {"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": self.events}
        return 404, self._status(404, "NotFound", f"{method} {path} is not served")


def run(server: FakeApiServer, timeout_s: float = 10) -> tuple[dict, list[str]]:
    lines: list[str] = []
    return run_trainjob(render(), NS, timeout_s=timeout_s, poll_s=0.02, api=server.api, log_sink=lines.append), lines


def test_success_returns_the_final_trainjob_streams_rank0_and_deletes():
    with FakeApiServer("succeeded") as server:
        final, lines = run(server)
    assert trainjob_state(final) == SUCCEEDED and final["status"]["conditions"][0]["reason"] == "AllJobsCompleted"
    assert server.created["spec"] == render()["spec"]  # what was posted is what was rendered
    assert "[rank0] 11/23 10:41:01 - mmengine - INFO - bbox_mAP_50: 0.9410" in lines
    assert not any("node 1" in line for line in lines)
    assert any("503" in line and "retrying" in line for line in lines)  # the transient error was retried
    assert server.count("POST", "/trainjobs") == 1 and server.count("DELETE") == 1
    (delete,) = [q for m, _, q in server.requests if m == "DELETE"]
    assert delete["propagationPolicy"] == "Background"
    selectors = {q.get("labelSelector") for m, p, q in server.requests if p.endswith("/pods")}
    assert f"jobset.sigs.k8s.io/jobset-name={NAME},jobset.sigs.k8s.io/replicatedjob-name=node" in selectors


def test_failure_raises_with_the_condition_the_container_state_and_events():
    with FakeApiServer("failed") as server:
        with pytest.raises(TrainJobFailed) as err:
            run(server)
    message = str(err.value)
    assert isinstance(err.value, StepFailed) and err.value.exit_code == 4  # the CLI's "a step failed"
    assert f"TrainJob {NS}/{NAME} failed" in message
    assert f"Failed=True FailedJobs: jobset failed due to one or more job failures (first failed job: {NAME}-node-0)" in message
    assert "BackoffLimitExceeded: Job has reached the specified backoff limit" in message
    assert "node: OOMKilled, exit code 137" in message
    assert "another workload" not in message
    assert server.count("DELETE") == 1


def test_timeout_raises_with_the_scheduling_events_and_deletes():
    with FakeApiServer("timeout") as server:
        with pytest.raises(TrainJobFailed, match="did not finish within 0.3 s") as err:
            run(server, timeout_s=0.3)
    assert "FailedScheduling: 0/12 nodes are available: 12 Insufficient nvidia.com/gpu" in str(err.value)
    assert "job node: active=1 ready=0" in str(err.value)
    assert server.count("DELETE") == 1


def test_deleted_underneath_raises_and_does_not_delete_again():
    with FakeApiServer("deleted") as server:
        with pytest.raises(TrainJobFailed, match="was deleted while running") as err:
            run(server)
    assert "Killing: Stopping container node" in str(err.value)
    assert server.count("GET") == 2 and server.count("DELETE") == 0


def test_create_conflict_raises_without_touching_the_other_trainjob():
    with FakeApiServer("succeeded", create_code=409) as server:
        with pytest.raises(TrainJobFailed, match="409 .* already exists .*previous attempt"):
            run(server)
    assert server.count("GET") == 0 and server.count("DELETE") == 0


def test_sigterm_while_waiting_deletes_the_trainjob():
    """A cancelled run terminates the step's pod: the TrainJob (and its GPUs) must not outlive it."""
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    with FakeApiServer("timeout") as server:
        timer.start()
        with pytest.raises(TrainJobFailed, match="SIGTERM"):
            run(server, timeout_s=30)
    timer.cancel()
    assert server.count("DELETE") == 1
    assert signal.getsignal(signal.SIGTERM) is before


# -- the KFP component ------------------------------------------------------------------------------------

def test_component_runs_the_trainjob_and_publishes_its_yaml(tmp_path, monkeypatch):
    from kfp.dsl import Artifact, Dataset, Model

    from admlops.components.train_distributed.component import train_distributed

    dataset = Dataset(uri=str(tmp_path / "dataset"), metadata={"object_uri": "minio://mlpipeline/lake/datasets/kitti/v1/"})
    model, rendered = Model(uri=str(tmp_path / "model")), Artifact(uri=str(tmp_path / "trainjob.yaml"))
    args = dict(dataset=dataset, config="rtmdet_tiny_kitti", max_iters=500, batch_size=4, seed=3,
                image="ghcr.io/admlops/gpu:0.1.0", num_nodes=2,
                procs_per_node=8, gpus_per_node=8, namespace=NS, s3_secret="admlops-s3", timeout_s=60, model=model,
                trainjob=rendered)
    with pytest.raises(ValueError, match="PIPELINE_JOB_ID_PLACEHOLDER"):
        train_distributed.python_func(run_id="{{$.pipeline_job_uuid}}", **args)
    with FakeApiServer("succeeded") as server:
        monkeypatch.setattr(tj, "_default_api_client", lambda: server.api)
        monkeypatch.setattr(tj, "run_trainjob", functools.partial(tj.run_trainjob, poll_s=0.02))
        train_distributed.python_func(run_id=RUN_ID, **args)
    obj = yaml.safe_load(Path(rendered.path).read_text())
    assert obj == {**server.created, "metadata": {k: v for k, v in server.created["metadata"].items()
                                                  if k not in ("uid", "resourceVersion", "creationTimestamp")}}
    assert obj["metadata"]["name"] == NAME and obj["spec"]["trainer"]["command"] == [
        "admlops", "train", "s3://mlpipeline/lake/datasets/kitti/v1/", model.uri, "--config", "rtmdet_tiny_kitti", "--nproc", "8",
        "--seed", "3", "--max-iters", "500", "--batch-size", "4", "--store", f"{model.uri}.checkpoints", "--run-id", RUN_ID,
        "--wandb"]
    assert obj["spec"]["trainer"]["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8"}
    assert json.loads((Path(model.path) / "trainjob.json").read_text())["name"] == NAME
    assert model.metadata["trainjob"] == NAME and server.count("DELETE") == 1


def test_component_compiles_with_the_run_id_placeholder(tmp_path):
    from kfp import compiler, dsl

    from admlops.components.train_distributed.component import train_distributed

    @dsl.pipeline(name="train-distributed-only")
    def pipeline(dataset_uri: str = "s3://lake/datasets/kitti/v1/"):
        data = dsl.importer(artifact_uri=dataset_uri, artifact_class=dsl.Dataset)
        train_distributed(dataset=data.output, config="rtmdet_tiny_kitti", max_iters=0, batch_size=0, seed=0,
                          image="ghcr.io/admlops/gpu:0.1.0",
                          num_nodes=2, procs_per_node=8, gpus_per_node=8, namespace="", s3_secret="admlops-s3",
                          timeout_s=86400, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)

    compiler.Compiler().compile(pipeline, str(tmp_path / "p.yaml"))
    spec = yaml.safe_load((tmp_path / "p.yaml").read_text())
    task = spec["root"]["dag"]["tasks"]["train-distributed"]["inputs"]["parameters"]
    assert task["run_id"] == {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}



def test_train_command_parses_and_resumes_from_the_run_store():
    from admlops.pipelines.cli import build_parser

    cmd = tj.train_command("s3://lake/datasets/kitti/v1/", "s3://mlpipeline/run/model", "rtmdet_tiny_kitti", 8, "run-1",
                           max_iters=300, batch_size=16, seed=5)
    args = build_parser().parse_args(cmd[1:])
    assert (args.dataset, args.out, args.nproc) == ("s3://lake/datasets/kitti/v1/", "s3://mlpipeline/run/model", 8)
    assert (args.max_iters, args.batch_size, args.seed) == (300, 16, 5)  # the pipeline's train_* reach every node
    assert (args.store, args.run_id, args.wandb) == ("s3://mlpipeline/run/model.checkpoints", "run-1", True)
    assert args.init_from is None
    cmd = tj.train_command("s3://lake/d/", "s3://mlpipeline/run/model", "rtmdet_tiny_kitti", 8, "run-1",
                           init_from="det@production", init_store="s3://lake")
    args = build_parser().parse_args(cmd[1:])  # the start model from the lake's zoo; checkpoints to the run's store
    assert (args.init_from, args.init_store, args.store) == ("det@production", "s3://lake", "s3://mlpipeline/run/model.checkpoints")
