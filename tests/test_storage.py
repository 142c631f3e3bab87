"""Object store, dataset versions and model zoo, against the local store and moto's S3 server."""
import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from admlops import catalog, zoo
from admlops.objectstore import StoreError, open_store


def _tree(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _files(n_small=50, big=3 << 20):
    files = {f"images/{i:04d}.png": hashlib.sha256(str(i).encode()).digest() * (i + 1) for i in range(n_small)}
    files["labels/all.txt"] = b"Car 0 0\n" * 100
    files["velodyne/big.bin"] = os.urandom(big)
    return files


def test_object_roundtrip(store_uri, tmp_path):
    store = open_store(store_uri)
    store.put_bytes("a/b.txt", b"hello")
    assert store.get_bytes("a/b.txt") == b"hello" and store.get_bytes("a/b.txt", 1, 3) == b"ell"
    assert store.exists("a/b.txt") and not store.exists("a/c.txt")
    (tmp_path / "f").write_bytes(b"x" * 1000)
    store.put_file("a/f", tmp_path / "f")
    store.get_file("a/f", tmp_path / "g")
    assert (tmp_path / "g").read_bytes() == b"x" * 1000
    assert sorted(store.list("a/")) == ["a/b.txt", "a/f"]
    with pytest.raises(StoreError, match="no such object"):
        store.get_bytes("a/missing")
    assert store.uri("a/f").startswith("s3://" if store_uri.startswith("s3") else "file://")


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../b", "a//b", "a\\b", ""])
def test_unsafe_keys_rejected(store_uri, key):
    with pytest.raises(StoreError, match="unsafe object key"):
        open_store(store_uri).put_bytes(key, b"x")


def test_dataset_version_push_pull_dedup(store_uri, tmp_path):
    src = _tree(tmp_path / "src", _files())
    store = open_store(store_uri)
    roles = {"images/": "image", "labels/": "label"}
    v1 = catalog.push(store, "datasets", "kitti", src, roles=roles)
    assert v1.version.startswith("v") and v1.files == 52
    assert catalog.list_versions(store, "datasets") == [("kitti", v1.version)]
    rows = catalog.read_manifest(store, "datasets", "kitti", v1.version)
    assert {r["role"] for r in rows} == {"image", "label", "file"}
    assert len({r["object"] for r in rows if r["path"].startswith("images/")}) == 1  # small files packed
    # pull verifies and reproduces every byte
    catalog.pull(store, "datasets", "kitti", v1.version, tmp_path / "out")
    for p in src.rglob("*"):
        if p.is_file():
            assert (tmp_path / "out" / p.relative_to(src)).read_bytes() == p.read_bytes()
    # re-publishing unchanged content moves no bytes, as the same version or a new one
    store = open_store(store_uri)
    assert catalog.push(store, "datasets", "kitti", src, roles=roles).version == v1.version
    catalog.push(store, "datasets", "kitti", src, version="again", roles=roles)
    data_up = store.bytes_up - sum(len(store.get_bytes(f"datasets/kitti/again/{f}")) for f in ("info.json", "manifest.parquet"))
    assert data_up == 0
    # one changed file: only it moves
    (src / "images" / "0003.png").write_bytes(b"changed")
    store = open_store(store_uri)
    v2 = catalog.push(store, "datasets", "kitti", src, roles=roles)
    meta = sum(len(store.get_bytes(f"datasets/kitti/{v2.version}/{f}")) for f in ("info.json", "manifest.parquet"))
    assert v2.version != v1.version and store.bytes_up - meta == len(b"changed")
    with pytest.raises(StoreError, match="immutable"):
        catalog.push(store, "datasets", "kitti", src, version="again")


def test_corrupted_object_detected_on_pull(store_uri, tmp_path):
    src = _tree(tmp_path / "src", _files(n_small=5))
    store = open_store(store_uri)
    v = catalog.push(store, "datasets", "d", src)
    rows = catalog.read_manifest(store, "datasets", "d", v.version)
    for what in ("packs/", "objects/"):
        key = next(r["object"] for r in rows if r["object"].startswith(what))
        good = store.get_bytes(key)
        store.put_bytes(key, bytes([good[0] ^ 0xFF]) + good[1:])
        with pytest.raises(StoreError, match="corrupted object: sha256 of .* does not match"):
            catalog.pull(store, "datasets", "d", v.version, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        store.put_bytes(key, good)


def test_manifest_with_traversal_key_rejected_before_writing(store_uri, tmp_path):
    store = open_store(store_uri)
    v = catalog.push(store, "datasets", "d", _tree(tmp_path / "src", {"a.txt": b"a"}))
    rows = catalog.read_manifest(store, "datasets", "d", v.version)
    rows[0]["path"] = "../../escape.txt"
    store.put_bytes(f"datasets/d/{v.version}/manifest.parquet", catalog._manifest_bytes(rows))
    with pytest.raises(StoreError, match="unsafe object key '../../escape.txt'"):
        catalog.pull(store, "datasets", "d", v.version, tmp_path / "out" / "x")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out").exists()


KILL_PUSH = """
import sys, time
from admlops import catalog
from admlops.objectstore import open_store
store = open_store(sys.argv[1])
real = store.put_bytes
def slow(key, data):
    real(key, data)
    print("PUT", key, flush=True)
    time.sleep(0.2)
store.put_bytes = slow
catalog.PACK_TARGET = 1000  # many packs, so the push is still uploading when it is killed
catalog.WORKERS = 1
catalog.push(store, "datasets", "killed", sys.argv[2])
"""


def test_killed_upload_leaves_no_visible_version(store_uri, tmp_path):
    src = _tree(tmp_path / "src", {f"f{i}.bin": bytes([i]) * 900 for i in range(40)})
    proc = subprocess.Popen([sys.executable, "-c", KILL_PUSH, store_uri, str(src)], stdout=subprocess.PIPE, text=True)
    for _ in range(3):  # a few packs are up
        assert proc.stdout.readline().startswith("PUT packs/")
    proc.kill()
    proc.wait()
    store = open_store(store_uri)
    assert any(k.startswith("packs/") for k in store.list("packs/"))
    assert catalog.list_versions(store, "datasets") == []
    # and a later complete push commits normally
    assert catalog.list_versions(store, "datasets") == [] and catalog.push(store, "datasets", "killed", src).files == 40


def test_unreachable_endpoint_bounded_retries(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ADMLOPS_S3_MAX_ATTEMPTS", "3")
    start = time.monotonic()
    with pytest.raises(StoreError, match=r"cannot reach S3 endpoint http://127.0.0.1:9 \(gave up after 3 attempts\)"):
        open_store("s3://bucket/x").get_bytes("k")
    assert time.monotonic() - start < 60


def test_model_zoo_lineage_and_aliases(store_uri, tmp_path):
    store = open_store(store_uri)
    data = catalog.push(store, "datasets", "kitti", _tree(tmp_path / "d", {"a.txt": b"a"}))
    model_dir = _tree(tmp_path / "m", {"model.pth": b"weights", "config.py": b"model = dict()\n", "metrics.json": b"{}"})
    record = zoo.lineage(data.ref(), model_dir / "config.py", run_id="run-1")
    v1 = zoo.publish(store, "rtmdet", model_dir, record)
    info = catalog.show(store, "models", "rtmdet", v1.version).info
    assert info["lineage"]["dataset"] == {"name": "kitti", "version": data.version, "manifest_sha256": data.manifest_sha256}
    assert info["lineage"]["config_sha256"] == hashlib.sha256(b"model = dict()\n").hexdigest()
    assert info["lineage"]["pipeline_run_id"] == "run-1" and info["lineage"]["code_version"]
    roles = {r["path"]: r["role"] for r in catalog.read_manifest(store, "models", "rtmdet", v1.version)}
    assert roles == {"model.pth": "checkpoint", "config.py": "config", "metrics.json": "metrics"}
    (model_dir / "model.pth").write_bytes(b"weights2")
    v2 = zoo.publish(store, "rtmdet", model_dir, zoo.lineage(data.ref(), model_dir / "config.py", "run-2", parent=v1.version))
    zoo.promote(store, "rtmdet", v1.version, "production", who="alice")
    zoo.promote(store, "rtmdet", v2.version, "production", who="bob")
    assert zoo.resolve(store, "rtmdet", "production") == v2.version
    assert [(h["by"], h["version"], h["previous"]) for h in zoo.history(store, "rtmdet")] == [
        ("alice", v1.version, None), ("bob", v2.version, v1.version)]
    with pytest.raises(StoreError, match="no committed version"):
        zoo.promote(store, "rtmdet", "v000000000000", "production")
    assert json.loads(store.get_bytes("models/rtmdet/aliases/production.json"))["by"] == "bob"


def test_list_prefixes(store_uri):
    store = open_store(store_uri)
    for key in ("a/b/c.txt", "a/bc.txt", "ab.txt"):
        store.put_bytes(key, b"x")
    assert sorted(store.list("")) == ["a/b/c.txt", "a/bc.txt", "ab.txt"]
    assert sorted(store.list("a/")) == ["a/b/c.txt", "a/bc.txt"]
    assert sorted(store.list("a/b")) == ["a/b/c.txt", "a/bc.txt"]
    assert sorted(store.list("a")) == ["a/b/c.txt", "a/bc.txt", "ab.txt"]
    assert list(store.list("zzz/")) == []
