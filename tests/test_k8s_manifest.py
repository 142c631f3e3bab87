"""The Pipeline / PipelineVersion custom resources validate against KFP 2.17's CRDs and carry the compiled spec."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from admlops.pipelines.k8s_manifest import API_VERSION, render_manifests, spec_digest, write_manifests
from admlops.pipelines.registry import compile_pipeline

CRDS = Path(__file__).resolve().parent.parent.parent / "shared" / "schemas" / "kubeflow-pipelines"
CRD_FILES = {"Pipeline": "pipelines.kubeflow.org_pipelines.yaml",
             "PipelineVersion": "pipelines.kubeflow.org_pipelineversions.yaml"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return render_manifests("detection2d", "v1.2.0", "perception")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> list[dict]:
    return list(yaml.safe_load_all(compile_pipeline("detection2d", tmp_path_factory.mktemp("ir")).read_text()))


def _schema(kind: str) -> dict:
    path = CRDS / CRD_FILES[kind]
    if not path.is_file():
        pytest.skip(f"KFP CRD {path} is absent (the shared schemas are not checked out here)")
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == API_VERSION.split("/")[1]]
    assert f"{crd['spec']['group']}/{version['name']}" == API_VERSION and crd["spec"]["names"]["kind"] == kind
    return version["schema"]["openAPIV3Schema"]


def _unknown_fields(obj, schema: dict, path: str = "") -> list[str]:
    """Fields the structural schema does not declare: the API server prunes them, and kubectl's default
    strict field validation rejects them."""
    if not isinstance(obj, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    props = schema.get("properties")
    if props is None:
        return []
    out = []
    for key, value in obj.items():
        if key in props:
            out += _unknown_fields(value, props[key], f"{path}.{key}")
        elif not schema.get("additionalProperties"):
            out.append(f"{path}.{key}")
    return out


def test_kinds_names_and_references(manifests):
    pipeline, version = manifests
    assert [m["apiVersion"] for m in manifests] == [API_VERSION] * 2
    assert (pipeline["kind"], version["kind"]) == ("Pipeline", "PipelineVersion")
    assert pipeline["metadata"] == {"name": "detection2d", "namespace": "perception"}
    assert version["metadata"] == {"name": "detection2d-v1.2.0", "namespace": "perception"}
    assert version["spec"]["pipelineName"] == pipeline["metadata"]["name"]
    assert version["spec"]["versionName"] == "v1.2.0"
    assert version["spec"]["displayName"] == "detection2d v1.2.0"
    assert "convert" in pipeline["spec"]["description"]
    for m in manifests:
        name = m["metadata"]["name"]
        assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), name
        assert DNS_LABEL.match(m["metadata"]["namespace"])


@pytest.mark.parametrize("index", [0, 1])
def test_objects_validate_against_the_crds(manifests, index):
    import jsonschema

    obj = manifests[index]
    schema = _schema(obj["kind"])
    jsonschema.validate(obj, schema)
    assert _unknown_fields(obj, schema) == []
    assert set(obj["metadata"]) <= {"name", "namespace", "labels", "annotations"}


def test_the_version_carries_the_compiled_pipeline_spec(manifests, compiled):
    spec = manifests[1]["spec"]
    assert spec["pipelineSpec"] == compiled[0]
    if len(compiled) > 1:  # a platform spec document (Kubernetes-specific task settings)
        assert spec["platformSpec"] == compiled[1]
    else:
        assert "platformSpec" not in spec


def test_written_file_is_the_two_documents(manifests, tmp_path):
    out = write_manifests("detection2d", tmp_path / "deploy" / "detection2d.k8s.yaml", "v1.2.0", "perception")
    text = out.read_text()
    assert text.startswith("# ") and "kubectl apply -f detection2d.k8s.yaml" in text
    assert list(yaml.safe_load_all(text)) == manifests
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left behind


def test_default_version_is_the_spec_digest(compiled):
    pipeline, version = render_manifests("detection2d")
    digest = spec_digest(compiled[0], compiled[1] if len(compiled) > 1 else None)
    assert re.fullmatch(r"v[0-9a-f]{12}", digest)
    assert version["spec"]["versionName"] == digest and version["metadata"]["name"] == f"detection2d-{digest}"
    assert "namespace" not in pipeline["metadata"] and "namespace" not in version["metadata"]  # kubectl's current one
    assert render_manifests("detection2d")[1]["metadata"]["name"] == version["metadata"]["name"]  # stable


@pytest.mark.parametrize("bad", ["V1", "v1_0", "-v1", "v1.", "v 1", "x" * 250])
def test_invalid_versions_are_refused(bad):
    with pytest.raises(ValueError, match="version|Kubernetes object name"):
        render_manifests("detection2d", bad)


def test_unknown_pipeline_is_refused():
    with pytest.raises(ValueError, match="expected one of collect, detection2d"):
        render_manifests("no-such-pipeline", "v1")


SECRET_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bBearer\s+[A-Za-z0-9._~+/-]{8,}"),
    re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."),  # a JWT
    re.compile(r"(?i)(password|secret_access_key|api_key|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+_-]{8,}"),
]


def test_no_secret_like_values(monkeypatch):
    sentinels = {"AWS_SECRET_ACCESS_KEY": "sentinel-secret-4f1c9a", "ADMLOPS_KFP_TOKEN": "sentinel-token-8b2d7e",
                 "AWS_ACCESS_KEY_ID": "AKIASENTINEL0000TEST"}
    for key, value in sentinels.items():
        monkeypatch.setenv(key, value)
    text = yaml.safe_dump_all(render_manifests("detection2d", "v1", "perception"))
    for value in sentinels.values():
        assert value not in text
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(text), pattern.pattern
