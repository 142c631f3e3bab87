"""submit / upload through the real kfp.Client against a small KFP v2beta1 REST server on loopback.

The fake server implements only what the client calls (healthz, experiments list/create, runs create/get,
pipelines list/upload/upload_version), answers with the v2beta1 JSON field names, records every request,
and, when given a token, answers 401 to requests without it.
"""
from __future__ import annotations

import datetime
import json
import logging
import threading
import uuid
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from admlops.pipelines.submit import KfpApiError, RunFailed, RunTimedOut, submit, upload

DATA = Path(__file__).resolve().parent / "data" / "kfp"
API = "/apis/v2beta1"
TOKEN = "kfp-test-token-9f3b2c1d7e"  # not a real credential
PARAMS = {"source": "s3://perception-lake/kitti", "train_max_iters": 7, "data_val_fraction": 0.25}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _filter_value(query: dict) -> str | None:
    """The stringValue of an EQUALS display_name predicate (the only filter kfp.Client sends here)."""
    if "filter" not in query:
        return None
    pred = json.loads(query["filter"][0])["predicates"][0]
    assert pred["key"] == "display_name"
    return pred.get("stringValue", pred.get("string_value"))


class FakeKfp:
    """State and request log of the fake server; ``outcome`` is the state a run reaches on its second GET
    (None: it keeps RUNNING)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.gets: dict[str, int] = {}
        self.outcome: str | None = "SUCCEEDED"
        self.token: str | None = None
        self.lock = threading.Lock()

    # -- handlers: (method, path, query, body, files) -> (status, json) --------------------------------
    def handle(self, method: str, path: str, query: dict, body: dict, files: dict) -> tuple[int, dict]:
        q = {k: v[0] for k, v in query.items()}
        if (method, path) == ("GET", f"{API}/healthz"):
            return 200, {"multi_user": False, "pipeline_store": "database"}
        if (method, path) == ("GET", f"{API}/experiments"):
            name, ns = _filter_value(query), q.get("namespace", "")
            found = [e for e in self.experiments.values()
                     if (name is None or e["display_name"] == name) and e.get("namespace", "") == ns]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if (method, path) == ("POST", f"{API}/experiments"):
            exp = {"experiment_id": str(uuid.uuid4()), "display_name": body["display_name"],
                   "description": body.get("description") or "", "created_at": _now(),
                   "namespace": body.get("namespace") or "", "storage_state": "AVAILABLE"}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if (method, path) == ("POST", f"{API}/runs"):
            if body.get("experiment_id") not in self.experiments:
                return 404, _rpc_error(5, f"experiment {body.get('experiment_id')} not found")
            run = {**body, "run_id": str(uuid.uuid4()), "storage_state": "AVAILABLE",
                   "service_account": "pipeline-runner", "created_at": _now(), "scheduled_at": _now(),
                   "state": "PENDING", "state_history": [{"update_time": _now(), "state": "PENDING"}]}
            self.runs[run["run_id"]] = run
            return 200, run
        if method == "GET" and path.startswith(f"{API}/runs/"):
            run_id = path.rsplit("/", 1)[1]
            if run_id not in self.runs:
                return 404, _rpc_error(5, f"run {run_id} not found")
            self.gets[run_id] = self.gets.get(run_id, 0) + 1
            return 200, self._run_state(self.runs[run_id], self.gets[run_id])
        if (method, path) == ("GET", f"{API}/pipelines"):
            name, ns = _filter_value(query), q.get("namespace", "")
            found = [p for p in self.pipelines.values()
                     if (name is None or p["display_name"] == name) and p.get("namespace", "") == ns]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if (method, path) == ("POST", f"{API}/pipelines/upload"):
            spec = _uploaded_spec(files)
            name = q.get("display_name") or q.get("name") or spec["pipelineInfo"]["name"]
            pipeline = {"pipeline_id": str(uuid.uuid4()), "name": q.get("name", name), "display_name": name,
                        "description": q.get("description", ""), "created_at": _now(),
                        "namespace": q.get("namespace", "")}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self._add_version(pipeline["pipeline_id"], pipeline["name"], spec, pipeline["description"])  # as KFP does
            return 200, pipeline
        if (method, path) == ("POST", f"{API}/pipelines/upload_version"):
            if q.get("pipelineid") not in self.pipelines:
                return 404, _rpc_error(5, f"pipeline {q.get('pipelineid')} not found")
            if any(v["pipeline_id"] == q["pipelineid"] and v["name"] == q["name"] for v in self.versions.values()):
                return 409, _rpc_error(6, f"a version named {q['name']} already exists")
            return 200, self._add_version(q["pipelineid"], q["name"], _uploaded_spec(files), q.get("description", ""))
        return 404, _rpc_error(5, f"the fake KFP server does not implement {method} {path}")

    def _add_version(self, pipeline_id: str, name: str, spec: dict, description: str) -> dict:
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": str(uuid.uuid4()), "name": name,
                   "display_name": name, "description": description, "created_at": _now(), "pipeline_spec": spec}
        self.versions[version["pipeline_version_id"]] = version
        return version

    def _run_state(self, run: dict, gets: int) -> dict:
        if gets < 2 or self.outcome is None:
            return {**run, "state": "RUNNING"}
        if self.outcome == "FAILED":
            text = (DATA / "run_failed.json").read_text()
            for key, value in (("__RUN_ID__", run["run_id"]), ("__EXPERIMENT_ID__", run["experiment_id"]),
                               ("__DISPLAY_NAME__", run["display_name"])):
                text = text.replace(key, value)
            return json.loads(text)
        return {**run, "state": self.outcome, "finished_at": _now(),
                "state_history": run["state_history"] + [{"update_time": _now(), "state": self.outcome}]}

    def calls(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == API + path]


def _rpc_error(code: int, message: str) -> dict:
    """The grpc-gateway error body the KFP API server sends."""
    return {"error": message, "code": code, "message": message, "details": []}


def _uploaded_spec(files: dict) -> dict:
    content = files["uploadfile"][1]
    return next(yaml.safe_load_all(content))


def _parse_multipart(content_type: str, data: bytes) -> dict:
    msg = BytesParser(policy=policy.default).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + data)
    return {part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in msg.iter_parts()}


def _handler(state: FakeKfp):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ctype = self.headers.get("Content-Type", "")
            files = _parse_multipart(ctype, data) if ctype.startswith("multipart/") else {}
            body = json.loads(data) if data and ctype.startswith("application/json") else {}
            with state.lock:
                state.requests.append({"method": method, "path": url.path, "query": parse_qs(url.query), "body": body,
                                       "files": files, "authorization": self.headers.get("Authorization")})
                if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
                    status, out = 401, _rpc_error(16, "Unauthenticated: request has no valid bearer token")
                else:
                    status, out = state.handle(method, url.path, parse_qs(url.query), body, files)
            raw = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def log_message(self, *args):  # keep pytest output clean
            pass

    return Handler


@pytest.fixture()
def kfp_server(monkeypatch, tmp_path):
    """(host, FakeKfp); the client's context file and environment are isolated from this machine's."""
    from kfp.client import Client

    monkeypatch.setattr(Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for var in ("ADMLOPS_KFP_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH", "KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT",
                "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME", "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_submit_waits_for_success_and_sends_the_compiled_pipeline(kfp_server, capsys):
    host, kfp = kfp_server
    out = submit("detection2d", host, PARAMS, namespace="perception", experiment="admlops-ci", run_name="ci-42",
                 wait=True, timeout_s=30, poll_s=0.01)

    (run_id,) = kfp.runs
    assert out == {"run_id": run_id, "url": f"{host}/#/runs/details/{run_id}", "state": "SUCCEEDED"}
    assert out["url"] in capsys.readouterr().out
    (create,) = kfp.calls("POST", "/experiments")
    assert create["body"]["display_name"] == "admlops-ci" and create["body"]["namespace"] == "perception"
    assert kfp.calls("GET", "/experiments")[0]["query"]["namespace"] == ["perception"]
    (sent,) = kfp.calls("POST", "/runs")
    body = sent["body"]
    assert body["display_name"] == "ci-42"
    (experiment_id,) = kfp.experiments
    assert body["experiment_id"] == experiment_id
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "detection2d"
    assert set(body["pipeline_spec"]["root"]["dag"]["tasks"]) >= {"convert", "train", "register"}
    assert body["runtime_config"]["parameters"] == PARAMS
    assert len(kfp.calls("GET", f"/runs/{run_id}")) == 2  # RUNNING, then SUCCEEDED


def test_submit_without_wait_returns_at_once_and_reuses_the_experiment(kfp_server):
    host, kfp = kfp_server
    first = submit("detection2d", host, PARAMS, None, "Default", None, wait=False, timeout_s=30)
    second = submit("detection2d", host, PARAMS, None, "Default", None, wait=False, timeout_s=30)
    assert first["state"] == second["state"] == "PENDING" and first["run_id"] != second["run_id"]
    assert len(kfp.calls("POST", "/experiments")) == 1 and len(kfp.experiments) == 1
    assert not [r for r in kfp.requests if r["path"].startswith(f"{API}/runs/")]  # never polled
    names = [r["body"]["display_name"] for r in kfp.calls("POST", "/runs")]
    assert all(n.startswith("detection2d-") for n in names)


def test_failed_run_raises_with_the_server_errors(kfp_server):
    host, kfp = kfp_server
    kfp.outcome = "FAILED"
    with pytest.raises(RunFailed) as info:
        submit("detection2d", host, PARAMS, None, "Default", "ci-fail", wait=True, timeout_s=30, poll_s=0.01)
    exc = info.value
    (run_id,) = kfp.runs
    assert exc.exit_code == 4 and exc.state == "FAILED" and exc.run_id == run_id
    message = str(exc)
    assert "ended FAILED" in message and run_id in message and "ci-fail" in message
    assert "task 'train' failed: main container exited with code 1" in message  # the run's error
    assert "task train: CUDA out of memory" in message  # the failed task's error
    assert "convert" not in message  # a task that succeeded is not blamed


@pytest.mark.parametrize("outcome", ["CANCELED", "SKIPPED"])
def test_a_run_that_ends_other_than_succeeded_fails(kfp_server, outcome):
    host, kfp = kfp_server
    kfp.outcome = outcome
    with pytest.raises(RunFailed, match=f"ended {outcome}") as info:
        submit("detection2d", host, PARAMS, None, "Default", None, wait=True, timeout_s=30, poll_s=0.01)
    assert info.value.state == outcome


def test_wait_times_out(kfp_server):
    host, kfp = kfp_server
    kfp.outcome = None
    with pytest.raises(RunTimedOut, match="still RUNNING") as info:
        submit("detection2d", host, PARAMS, None, "Default", None, wait=True, timeout_s=0.05, poll_s=0.01)
    assert info.value.exit_code == 4


def test_parameters_are_checked_before_anything_is_sent(kfp_server):
    host, kfp = kfp_server
    with pytest.raises(ValueError, match=r"missing required parameters \['source'\]"):
        submit("detection2d", host, {"train_max_iters": 3}, "ns", "Default", None, wait=False, timeout_s=30)
    with pytest.raises(ValueError, match="unknown parameters"):
        submit("detection2d", host, {**PARAMS, "max_iters": 3}, "ns", "Default", None, wait=False, timeout_s=30)
    with pytest.raises(ValueError, match="expected one of collect, detection2d"):
        submit("no-such-pipeline", host, {}, "ns", "Default", None, wait=False, timeout_s=30)
    assert kfp.requests == []


def test_upload_creates_the_pipeline_then_adds_versions(kfp_server):
    host, kfp = kfp_server
    first = upload("detection2d", host, "v1.0.0", None, "RTMDet on KITTI")
    assert first["created_pipeline"] and first["name"] == "detection2d" and first["version"] == "v1.0.0"
    (up,) = kfp.calls("POST", "/pipelines/upload")
    assert up["query"]["name"] == ["detection2d"] and up["query"]["description"] == ["RTMDet on KITTI"]
    filename, content = up["files"]["uploadfile"]
    assert filename.endswith(".yaml") and yaml.safe_load(content)["pipelineInfo"]["name"] == "detection2d"
    (ver,) = kfp.calls("POST", "/pipelines/upload_version")
    assert ver["query"]["name"] == ["v1.0.0"] and ver["query"]["pipelineid"] == [first["pipeline_id"]]
    assert kfp.versions[first["pipeline_version_id"]]["pipeline_spec"]["pipelineInfo"]["name"] == "detection2d"
    assert first["url"] == f"{host}/#/pipelines/details/{first['pipeline_id']}/version/{first['pipeline_version_id']}"

    second = upload("detection2d", host, "v1.1.0", None, None)
    assert not second["created_pipeline"] and second["pipeline_id"] == first["pipeline_id"]
    assert len(kfp.calls("POST", "/pipelines/upload")) == 1 and len(kfp.calls("POST", "/pipelines/upload_version")) == 2
    assert {v["name"] for v in kfp.versions.values()} == {"detection2d", "v1.0.0", "v1.1.0"}

    with pytest.raises(KfpApiError, match="HTTP 409.*already exists"):
        upload("detection2d", host, "v1.1.0", None, None)
    with pytest.raises(ValueError, match="version 'V 2'"):
        upload("detection2d", host, "V 2", None, None)


def test_upload_looks_up_the_pipeline_in_the_namespace(kfp_server):
    host, kfp = kfp_server
    shared = upload("detection2d", host, "v1", None, None)
    mine = upload("detection2d", host, "v1", "perception", None)
    assert mine["created_pipeline"] and mine["pipeline_id"] != shared["pipeline_id"]
    assert kfp.calls("POST", "/pipelines/upload")[1]["query"]["namespace"] == ["perception"]
    assert kfp.calls("GET", "/pipelines")[1]["query"]["namespace"] == ["perception"]


def test_token_is_sent_as_bearer_and_never_printed(kfp_server, monkeypatch, capsys, caplog):
    host, kfp = kfp_server
    caplog.set_level(logging.DEBUG)
    kfp.token = TOKEN
    monkeypatch.setenv("ADMLOPS_KFP_TOKEN", TOKEN)
    assert submit("detection2d", host, PARAMS, None, "Default", None, wait=True, timeout_s=30, poll_s=0.01)["state"] \
        == "SUCCEEDED"
    upload("detection2d", host, "v1", None, None)
    kfp.outcome = "FAILED"
    with pytest.raises(RunFailed) as info:
        submit("detection2d", host, PARAMS, None, "Default", None, wait=True, timeout_s=30, poll_s=0.01)

    assert kfp.requests and {r["authorization"] for r in kfp.requests} == {f"Bearer {TOKEN}"}
    out, err = capsys.readouterr()
    for text in (out, err, caplog.text, str(info.value)):
        assert TOKEN not in text


def test_missing_token_is_a_clear_error(kfp_server, monkeypatch, capsys):
    host, kfp = kfp_server
    kfp.token = TOKEN
    monkeypatch.setenv("ADMLOPS_KFP_TOKEN", "wrong-token-0000")
    with pytest.raises(KfpApiError, match=r"HTTP 401.*ADMLOPS_KFP_TOKEN") as info:
        submit("detection2d", host, PARAMS, "perception", "Default", None, wait=False, timeout_s=30)
    assert "wrong-token-0000" not in str(info.value) + "".join(capsys.readouterr())


def test_service_account_token_file(kfp_server, monkeypatch, tmp_path):
    host, kfp = kfp_server
    kfp.token = TOKEN
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(path))
    submit("detection2d", host, PARAMS, "perception", "Default", None, wait=False, timeout_s=30)
    assert {r["authorization"] for r in kfp.requests} == {f"Bearer {TOKEN}"}


def test_unreachable_host_is_a_clear_error(kfp_server):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(KfpApiError, match=f"cannot reach the KFP API at http://127.0.0.1:{port}"):
        submit("detection2d", f"http://127.0.0.1:{port}", PARAMS, "perception", "Default", None, wait=False,
               timeout_s=30)
