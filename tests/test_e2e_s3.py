"""The same pipeline with S3 as the store (moto's server on loopback), and credentials kept out of
everything it writes: logs, run artifacts, lake records; and out of the YAML compiled with them in the
environment (every cluster profile, which maps the S3 Secret into the steps) and the repository's YAML."""
import json
import re
import subprocess
import sys
import uuid

from conftest import FAKE_KEY_ID, FAKE_SECRET, REPO  # noqa: E402

# a literal value for one of the Secret's keys (``aws_secret_access_key: abc``), bar the template's placeholder
LITERAL = re.compile(r"(?im)^\s*(aws_secret_access_key|aws_access_key_id)\s*:\s*(?!REPLACE_ME\s*$)\S+")


def test_pipeline_on_s3_keeps_credentials_out(kitti_root, s3_env, tmp_path):
    import boto3

    from admlops import catalog
    from admlops.objectstore import open_store

    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    store_uri = f"s3://{bucket}/admlops"
    store = open_store(store_uri)
    src = catalog.push(store, "datasets", "kitti-small", kitti_root)
    res = subprocess.run(
        [sys.executable, "-m", "admlops.pipelines.cli", "run", "detection2d", "--local", "--store", str(tmp_path / "local"),
         "--param", f"store={store_uri}", "--param", f"source=kitti-small@{src.version}",
         "--param", "train_max_iters=2", "--param", "train_batch_size=2", "--param", "bench_max_images=2",
         "--param", "bench_warmup=1", "--param", "deploy_backends=onnxruntime:fp32"],  # the store is under test
        capture_output=True, text=True, timeout=1200,
    )
    assert res.returncode == 0, res.stderr[-5000:]
    (zoo_model,) = (tmp_path / "local" / "runs").glob("*/register/zoo_model")  # a 2-iteration model: no alias
    info = catalog.show(store, "models", "rtmdet-tiny-kitti", json.loads(zoo_model.read_text())["version"]).info
    assert info["lineage"]["dataset"]["name"] == "kitti-small-coco-kitti-3class"
    # credentials: not in the logs, nor anywhere the run or the lake wrote, nor in the repo's YAML
    assert FAKE_SECRET not in res.stdout + res.stderr
    for path in (tmp_path / "local").rglob("*"):
        if path.is_file():
            assert FAKE_SECRET.encode() not in path.read_bytes(), path
    for key in store.list(""):
        if key.endswith((".json", ".parquet")):
            assert FAKE_SECRET.encode() not in store.get_bytes(key), key
    assert json.dumps(info).find("AWS_") == -1


def test_yaml_compiled_with_credentials_in_the_environment_holds_none(s3_env, tmp_path):
    """Compiling reads the environment (kfp, the profiles, the pipeline's defaults): with the S3 credentials
    set, every pipeline's YAML, and under each profile its YAML and Kubernetes manifest, maps the Secret's keys and
    holds no value."""
    import os

    from kfp import compiler, dsl

    from admlops.pipelines.k8s_manifest import write_manifests
    from admlops.pipelines.registry import PIPELINES, compile_pipeline

    assert os.environ["AWS_SECRET_ACCESS_KEY"] == FAKE_SECRET and os.environ["AWS_ACCESS_KEY_ID"] == FAKE_KEY_ID
    profiles = sorted(p.stem for p in (REPO / "configs" / "cluster").glob("*.yaml"))
    assert {"a100", "a100-x4", "minio-dev"} <= set(profiles)
    out = tmp_path / "compiled"
    out.mkdir()
    compiled = []
    for i, name in enumerate(sorted(PIPELINES)):  # every pipeline, and each under one profile in turn: every profile
        profile = profiles[i % len(profiles)]     # is compiled (the code that maps the Secret is the profile's); the
        compiled.append(compile_pipeline(name, out))  # manifest holds the profile's compiled spec and platform spec
        compiled.append(write_manifests(name, out / f"{name}-{profile}.k8s.yaml", "v1", "admlops", profile))
    assert len(PIPELINES) >= len(profiles)
    for path in compiled:
        text = path.read_text()
        assert FAKE_SECRET not in text and FAKE_KEY_ID not in text and not LITERAL.search(text), path
        if "-" in path.name:  # a profile's: the credentials reach the steps, by reference to the Secret
            assert "admlops-s3" in text and "AWS_SECRET_ACCESS_KEY" in text, path
    # the control: a pipeline that does take a credential from the environment at compile time is caught
    @dsl.component(base_image="python:3.11")
    def echo(value: str) -> str:
        return value

    @dsl.pipeline(name="leaky")
    def leaky(value: str = os.environ["AWS_SECRET_ACCESS_KEY"]):
        echo(value=value)

    compiler.Compiler().compile(leaky, str(tmp_path / "leaky.yaml"))
    assert FAKE_SECRET in (tmp_path / "leaky.yaml").read_text()


def test_repo_yaml_names_secret_keys_but_holds_no_value():
    """The committed pipeline YAML and manifests may name the Secret's keys (secretKeyRef), never hold a value
    for one; the template's placeholder is the only value."""
    paths = list((REPO / "pipelines").glob("*.yaml")) + list((REPO / "manifests").rglob("*.yaml"))
    assert paths
    for path in paths:
        assert not LITERAL.search(path.read_text()), path
    template = (REPO / "manifests" / "base" / "s3-secret.template.yaml").read_text()
    assert LITERAL.search(template.replace("REPLACE_ME", "abc123")), "the pattern would find a filled-in template"
