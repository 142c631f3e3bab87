"""The same pipeline with S3 as the store (moto's server on loopback), and credentials kept out of
everything it writes: logs, run artifacts, lake records, compiled YAML and manifests."""
import json
import re
import subprocess
import sys
import uuid

from conftest import FAKE_SECRET, REPO  # noqa: E402


def test_pipeline_on_s3_keeps_credentials_out(kitti_root, s3_env, tmp_path):
    import boto3

    from admlops import catalog, zoo
    from admlops.objectstore import open_store

    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    store_uri = f"s3://{bucket}/admlops"
    store = open_store(store_uri)
    src = catalog.push(store, "datasets", "kitti-small", kitti_root)
    res = subprocess.run(
        [sys.executable, "-m", "admlops.pipelines.cli", "run", "detection2d", "--local", "--store", str(tmp_path / "local"),
         "--param", f"store={store_uri}", "--param", f"kitti_root=kitti-small@{src.version}",
         "--param", "train_max_iters=2", "--param", "train_batch_size=2", "--param", "bench_max_images=2",
         "--param", "bench_warmup=1"],
        capture_output=True, text=True, timeout=1200,
    )
    assert res.returncode == 0, res.stderr[-5000:]
    record = zoo.resolve(store, "rtmdet-tiny-kitti", "candidate")
    info = catalog.show(store, "models", "rtmdet-tiny-kitti", record).info
    assert info["lineage"]["dataset"]["name"] == "kitti-small-coco-kitti-3class"
    # credentials: not in the logs, nor anywhere the run or the lake wrote, nor in the repo's YAML
    assert FAKE_SECRET not in res.stdout + res.stderr
    for path in (tmp_path / "local").rglob("*"):
        if path.is_file():
            assert FAKE_SECRET.encode() not in path.read_bytes(), path
    for key in store.list(""):
        if key.endswith((".json", ".parquet")):
            assert FAKE_SECRET.encode() not in store.get_bytes(key), key
    # the repo's YAML names the Secret's keys (secretKeyRef) but never holds a value for one, bar the template's placeholder
    literal = re.compile(r"(?im)^\s*(aws_secret_access_key|aws_access_key_id)\s*:\s*(?!REPLACE_ME\s*$)\S+")
    for path in list((REPO / "pipelines").glob("*.yaml")) + list((REPO / "manifests").rglob("*.yaml")):
        text = path.read_text()
        assert FAKE_SECRET not in text and not literal.search(text), path
    assert json.dumps(info).find("AWS_") == -1
