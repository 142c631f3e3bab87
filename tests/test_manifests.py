"""manifests/: the base and each overlay build, every object is valid, and each says what it should.

Built with the real kustomize (`kustomize build`, or the one inside `kubectl kustomize`); built-in kinds are
validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail), the
ClusterTrainingRuntime against the Kubeflow Trainer v2.3.0 CRD from ../shared/schemas (skipped where absent).
"""
from __future__ import annotations

import copy
import inspect
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from admlops import pins
from admlops.images import IMAGES

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
BUILDS = ["base", "overlays/dev-minio", "overlays/prod-aws"]
CRD_PATH = ROOT.parent / "shared/schemas/kubeflow-trainer-v2.3.0/trainer.kubeflow.org_clustertrainingruntimes.yaml"
# The oldest Kubernetes minor we support and the newest kubernetes-validate knows.
K8S_VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]
NAMESPACE = "admlops"
CLUSTER_SCOPED = {"Namespace", "ClusterTrainingRuntime"}
MINIO_ENDPOINT = "minio.admlops.svc:9000"
LAUNCHER_RULES = [
    {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["list"]},
]
SECRET_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
PLACEHOLDER = "REPLACE_ME"


def kustomize_command() -> list[str]:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.skip("neither kustomize nor kubectl is on PATH: cannot build manifests/ (this machine kind ships kubectl)")


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    cmd, out = kustomize_command(), {}
    for name in BUILDS:
        proc = subprocess.run([*cmd, str(MANIFESTS / name)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{' '.join(cmd)} manifests/{name} failed:\n{proc.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return out


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def providers(objs: list[dict]) -> dict:
    return yaml.safe_load(one(objs, "ConfigMap", "kfp-launcher")["data"]["providers"])


def quantity_gi(q: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi|Ti)", q)
    assert m, f"expected a storage quantity like 500Gi, got {q!r}"
    return float(m.group(1)) * {"Mi": 1 / 1024, "Gi": 1, "Ti": 1024}[m.group(2)]


def strict_crd_schema(schema: dict) -> dict:
    """The CRD's openAPIV3Schema with unknown fields rejected, as the API server prunes (drops) them silently."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return schema


# -- every object is valid --------------------------------------------------------------------------------

@pytest.mark.parametrize("build", BUILDS)
def test_builds_and_validates_against_kubernetes_schemas(built, build):
    objs = built[build]
    assert objs, f"manifests/{build} built to nothing"
    checked = 0
    for obj in objs:
        if obj["apiVersion"].startswith("trainer.kubeflow.org/"):
            continue
        for version in K8S_VERSIONS:
            error = None
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                error = f"{e.message} at {'/'.join(map(str, e.path))}"
            assert error is None, f"manifests/{build}: {obj['kind']} {obj['metadata']['name']} is invalid for Kubernetes {version}: {error}"
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("build", BUILDS)
def test_cluster_training_runtime_validates_against_the_trainer_crd(built, build):
    if not CRD_PATH.exists():
        pytest.skip(f"{CRD_PATH} is absent (the Trainer CRDs are read from ../shared, which a user's checkout lacks)")
    crd = yaml.load(CRD_PATH.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["scope"] == "Cluster"
    schema = strict_crd_schema(next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")["schema"]["openAPIV3Schema"])
    runtimes = [o for o in built[build] if o["kind"] == "ClusterTrainingRuntime"]
    assert [r["metadata"]["name"] for r in runtimes] == ["torch-distributed"]
    for obj in runtimes:
        assert obj["apiVersion"] == f"{crd['spec']['group']}/v1alpha1"
        assert "namespace" not in obj["metadata"], "ClusterTrainingRuntime is cluster-scoped"
        assert set(obj["metadata"]) <= {"name", "labels", "annotations"}
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
        # the CEL rule on mlPolicy (one framework at most), which jsonschema cannot evaluate
        policies = {"torch", "mpi", "jax", "xgboost", "flux"} & set(obj["spec"]["mlPolicy"])
        assert policies == {"torch"}


def test_strict_crd_schema_rejects_unknown_fields():
    if not CRD_PATH.exists():
        pytest.skip(f"{CRD_PATH} is absent")
    crd = yaml.load(CRD_PATH.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schema = strict_crd_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    bad = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime", "metadata": {"name": "x"},
           "spec": {"mlPolicy": {"numNodes": "two", "torchh": {}}, "template": {}}}
    messages = " ".join(e.message for e in jsonschema.Draft7Validator(schema).iter_errors(bad))
    assert "'two' is not of type 'integer'" in messages and "torchh" in messages


# -- what the objects say ---------------------------------------------------------------------------------

@pytest.mark.parametrize("build", BUILDS)
def test_everything_lives_in_the_admlops_namespace(built, build):
    for obj in built[build]:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert ns is None, f"{obj['kind']} {obj['metadata']['name']} is cluster-scoped but names namespace {ns}"
        else:
            assert ns == NAMESPACE, f"{obj['kind']} {obj['metadata']['name']} is in namespace {ns!r}, expected {NAMESPACE}"
        assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "admlops"
    assert one(built[build], "Namespace", NAMESPACE)


@pytest.mark.parametrize("build", BUILDS)
def test_launcher_role_is_least_privilege(built, build):
    objs = built[build]
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")], "no cluster-wide RBAC"
    role = one(objs, "Role", "admlops-pipeline-runner")
    assert role["rules"] == LAUNCHER_RULES, "the launcher Role must hold exactly the rules it uses"
    for obj in objs:
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{obj['kind']} {obj['metadata']['name']}: wildcard in {field}"
    steps = one(objs, "Role", "admlops-pipeline-steps")
    for rule in steps["rules"]:
        assert set(rule["verbs"]) <= {"get", "create", "patch"}
        if rule["resources"] != ["workflowtaskresults"]:
            assert rule.get("resourceNames") and rule["verbs"] == ["get"], f"steps Role: {rule} is not limited to named objects"
    sa = {"kind": "ServiceAccount", "name": "admlops-pipeline-runner", "namespace": NAMESPACE}
    for binding in (o for o in objs if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [sa] and binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] in {"admlops-pipeline-runner", "admlops-pipeline-steps"}


def test_launcher_role_covers_what_the_train_distributed_step_calls():
    """The calls components/train_distributed/trainjob.py makes are within the launcher Role."""
    trainjob = pytest.importorskip("admlops.components.train_distributed.trainjob")
    source = inspect.getsource(trainjob)
    calls = set(re.findall(r"\b(?:core|custom)\.(\w+)\(", source))
    allowed = {"create_namespaced_custom_object": ("trainjobs", "create"), "get_namespaced_custom_object": ("trainjobs", "get"),
               "list_namespaced_custom_object": ("trainjobs", "list"), "delete_namespaced_custom_object": ("trainjobs", "delete"),
               "list_namespaced_pod": ("pods", "list"), "read_namespaced_pod": ("pods", "get"),
               "read_namespaced_pod_log": ("pods/log", "get"), "list_namespaced_event": ("events", "list")}
    assert calls and calls <= set(allowed), f"trainjob.py calls APIs the Role does not grant: {sorted(calls - set(allowed))}"
    granted = {(r, v) for rule in LAUNCHER_RULES for r in rule["resources"] for v in rule["verbs"]}
    assert {allowed[c] for c in calls} <= granted


def test_runtime_matches_the_train_distributed_step_and_the_train_image(built):
    runtime = one(built["base"], "ClusterTrainingRuntime", "torch-distributed")
    (node,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGES["train"], "the runtime's image must be admlops.images.IMAGES['train']"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
    trainjob = pytest.importorskip("admlops.components.train_distributed.trainjob")
    assert inspect.signature(trainjob.render_trainjob).parameters["runtime"].default == runtime["metadata"]["name"]
    assert node["name"] == container["name"] == trainjob.NODE
    assert not pod.get("volumes"), "the step adds /dev/shm itself through runtimePatches"


def test_no_secret_is_applied_and_the_template_holds_only_placeholders(built):
    for build, objs in built.items():
        assert not [o for o in objs if o["kind"] == "Secret"], f"manifests/{build} would overwrite real credentials"
    template = yaml.safe_load((MANIFESTS / "base/s3-secret.template.yaml").read_text())
    assert template["kind"] == "Secret" and template["metadata"]["name"] == "admlops-s3"
    assert set(template["stringData"]) == SECRET_KEYS and "data" not in template
    assert set(template["stringData"].values()) == {PLACEHOLDER}
    for path in MANIFESTS.rglob("*.yaml"):
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY", text), f"{path}: looks like a credential"
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "Secret":
                assert set((doc.get("stringData") or {}).values()) <= {PLACEHOLDER} and not doc.get("data"), path
        if path.name == "kustomization.yaml":
            assert "s3-secret.template.yaml" not in yaml.safe_dump(yaml.safe_load(text)), f"{path} applies the Secret template"


@pytest.mark.parametrize("build", BUILDS)
def test_kfp_launcher_config_is_kfp_s3_provider_format(built, build):
    objs = built[build]
    data = one(objs, "ConfigMap", "kfp-launcher")["data"]
    assert set(data) == {"defaultPipelineRoot", "providers"}
    assert re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[\w./-]+)?", data["defaultPipelineRoot"])
    prov = providers(objs)
    assert set(prov) == {"s3"} and set(prov["s3"]) == {"default"}
    default = prov["s3"]["default"]
    assert set(default) <= {"endpoint", "region", "disableSSL", "forcePathStyle", "maxRetries", "credentials"}
    assert "://" not in default["endpoint"], "KFP's endpoint is host[:port]; disableSSL picks the scheme"
    creds = default["credentials"]
    if creds["fromEnv"]:
        assert set(creds) == {"fromEnv"}
    else:
        ref = creds["secretRef"]
        assert ref["secretName"] == "admlops-s3" and {ref["accessKeyKey"], ref["secretKeyKey"]} == SECRET_KEYS
    store = one(objs, "ConfigMap", "admlops-store")["data"]
    assert store["AWS_REGION"] == default["region"]
    bucket = data["defaultPipelineRoot"].split("/")[2]
    assert store["ADMLOPS_STORE"].startswith(f"s3://{bucket}/"), "artifacts and the store share one bucket"
    assert store["ADMLOPS_S3_ADDRESSING"] == ("path" if default["forcePathStyle"] else "virtual")


def test_overlays_differ_as_intended(built):
    base, dev, prod = built["base"], built["overlays/dev-minio"], built["overlays/prod-aws"]
    # dev-minio: the MinIO in the namespace, plain HTTP, path-style, the Secret's keys
    d = providers(dev)["s3"]["default"]
    assert (d["endpoint"], d["disableSSL"], d["forcePathStyle"], d["credentials"]["fromEnv"]) == (MINIO_ENDPOINT, True, True, False)
    assert one(dev, "ConfigMap", "admlops-store")["data"]["AWS_ENDPOINT_URL"] == f"http://{MINIO_ENDPOINT}"
    service = one(dev, "Service", "minio")
    assert 9000 in [p["port"] for p in service["spec"]["ports"]]
    minio = one(dev, "Deployment", "minio")
    (container,) = minio["spec"]["template"]["spec"]["containers"]
    assert container["image"] == pins.THIRD_PARTY_IMAGES["minio"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]} == {"admlops-s3"}
    assert minio["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    # prod-aws: AWS S3 over TLS, virtual-hosted, IRSA instead of keys
    p = providers(prod)["s3"]["default"]
    assert p["region"] == "us-west-2" and p["endpoint"] == "s3.us-west-2.amazonaws.com"
    assert (p["disableSSL"], p["forcePathStyle"], p["credentials"]) == (False, False, {"fromEnv": True})
    assert "AWS_ENDPOINT_URL" not in one(prod, "ConfigMap", "admlops-store")["data"]
    role_arn = one(prod, "ServiceAccount", "admlops-pipeline-runner")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", role_arn)
    for objs in (base, dev):
        assert "annotations" not in one(objs, "ServiceAccount", "admlops-pipeline-runner")["metadata"]
    assert not [o for o in prod + base if o["kind"] in ("Deployment", "Service")], "only dev runs MinIO"
    # dataset cache: shared by every node, small in dev, large in prod
    sizes = {}
    for name, objs in built.items():
        pvc = one(objs, "PersistentVolumeClaim", "admlops-dataset-cache")
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        sizes[name] = quantity_gi(pvc["spec"]["resources"]["requests"]["storage"])
    assert sizes["overlays/dev-minio"] < sizes["base"] < sizes["overlays/prod-aws"], sizes
    assert one(prod, "PersistentVolumeClaim", "admlops-dataset-cache")["spec"]["storageClassName"] == "efs-sc"


@pytest.mark.parametrize("build", BUILDS)
def test_every_container_image_is_ours_or_pinned(built, build):
    allowed = set(IMAGES.values()) | set(pins.THIRD_PARTY_IMAGES.values())
    found = set()
    for obj in built[build]:
        for match in re.finditer(r"'image': '([^']+)'", repr(obj)):
            found.add(match.group(1))
    assert found and found <= allowed, f"images not from admlops.images or admlops/pins.py: {sorted(found - allowed)}"
