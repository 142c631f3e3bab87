"""Object store, dataset versions and model zoo, against the local store and moto's S3 server."""
import hashlib
import io
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
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


def _sizes(store) -> dict[str, int]:
    """Every key in the store with its size."""
    return {k: len(store.get_bytes(k)) for k in store.list("")}


def _push(store_uri, kind, name, src, **kwargs):
    """Push through a fresh store object: the version, the keys it added (with sizes) and the bytes it uploaded."""
    store = open_store(store_uri)
    before = _sizes(store)
    v = catalog.push(store, kind, name, src, **kwargs)
    return v, {k: n for k, n in _sizes(store).items() if k not in before}, store.bytes_up


def _meta(v) -> set[str]:
    return {f"{v.kind}/{v.name}/{v.version}/{f}" for f in ("info.json", "manifest.parquet")}


def _pulls_verified(store, v, src, dest):
    catalog.pull(store, v.kind, v.name, v.version, dest)
    want = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == want


def _assert_stored_once(store):
    """The content area holds exactly the distinct content the committed versions reference, once each."""
    distinct = {}
    for kind in catalog.KINDS:
        for name, version in catalog.list_versions(store, kind):
            distinct.update((r["sha256"], r["size"]) for r in catalog.read_manifest(store, kind, name, version))
    stored = sum(n for k, n in _sizes(store).items() if k.startswith(("packs/", "objects/")))
    assert stored == sum(distinct.values())


def _index_entries_valid(store) -> int:
    """Every index entry (read directly) points at stored bytes of its sha256, once; returns how many there are."""
    entries = [e for k in store.list("index/") for e in pq.read_table(io.BytesIO(store.get_bytes(k))).to_pylist()]
    for e in entries:
        assert hashlib.sha256(store.get_bytes(e["object"], e["offset"], e["size"])).digest() == e["sha256"]
    assert len({e["sha256"] for e in entries}) == len(entries)
    return len(entries)


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
    store.delete("a/b.txt")
    store.delete("a/b.txt")  # already gone: no error
    assert sorted(store.list("a/")) == ["a/f"]
    assert store.uri("a/f").startswith("s3://" if store_uri.startswith("s3") else "file://")


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../b", "a//b", "a\\b", ""])
def test_unsafe_keys_rejected(store_uri, key):
    with pytest.raises(StoreError, match="unsafe object key"):
        open_store(store_uri).put_bytes(key, b"x")


def test_dataset_version_push_pull_dedup(store_uri, tmp_path):
    src = _tree(tmp_path / "src", _files())
    roles = {"images/": "image", "labels/": "label"}
    v1, added, moved = _push(store_uri, "datasets", "kitti", src, roles=roles)
    assert v1.version.startswith("v") and v1.files == 52 and moved == sum(added.values())
    store = open_store(store_uri)
    assert catalog.list_versions(store, "datasets") == [("kitti", v1.version)]
    rows = catalog.read_manifest(store, "datasets", "kitti", v1.version)
    assert {r["role"] for r in rows} == {"image", "label", "file"}
    assert len({r["object"] for r in rows if r["path"].startswith("images/")}) == 1  # small files packed
    assert _index_entries_valid(store) == 51  # every small content, none for the object-sized file
    _pulls_verified(store, v1, src, tmp_path / "out")
    # re-publishing unchanged content moves no bytes, as the same version or a new one
    assert _push(store_uri, "datasets", "kitti", src, roles=roles) == (v1, {}, 0)
    again, added, moved = _push(store_uri, "datasets", "kitti", src, version="again", roles=roles)
    assert set(added) == _meta(again) and moved == sum(added.values())
    # one changed file: only it moves, in a pack of its own, and the index segment is replaced by a merged one
    (src / "images" / "0003.png").write_bytes(b"changed")
    v2, added, moved = _push(store_uri, "datasets", "kitti", src, roles=roles)
    (pack,) = (k for k in added if k.startswith("packs/"))
    (segment,) = (k for k in added if k.startswith("index/"))
    assert v2.version != v1.version and moved == sum(added.values()) and added[pack] == len(b"changed")
    assert set(added) == _meta(v2) | {pack, segment}
    assert list(store.list("index/")) == [segment] and _index_entries_valid(store) == 52
    with pytest.raises(StoreError, match="immutable"):
        catalog.push(store, "datasets", "kitti", src, version="again")


def test_same_content_under_other_names_and_kinds_is_stored_once(store_uri, tmp_path):
    src = _tree(tmp_path / "src", _files(n_small=20))
    first, _, _ = _push(store_uri, "datasets", "kitti", src)
    copies = [_push(store_uri, "datasets", "kitti-copy", src), _push(store_uri, "models", "det", src)]
    store = open_store(store_uri)
    rows = {r["path"]: (r["object"], r["offset"]) for r in catalog.read_manifest(store, "datasets", "kitti", first.version)}
    for v, added, moved in copies:  # only the new version's info.json and manifest: no data, no index entry
        assert set(added) == _meta(v) and moved == sum(added.values())
        assert {r["path"]: (r["object"], r["offset"]) for r in catalog.read_manifest(store, v.kind, v.name, v.version)} == rows
    _assert_stored_once(store)
    for v in (first, *(c[0] for c in copies)):
        _pulls_verified(store, v, src, tmp_path / f"out-{v.kind}-{v.name}")


def test_small_file_shared_between_directories_is_stored_once(store_uri, tmp_path):
    shared = os.urandom(2000)
    a = _tree(tmp_path / "a", {"shared.bin": shared, "a.txt": b"only in a"})
    b = _tree(tmp_path / "b", {"sub/also-shared.bin": shared, "b.txt": b"only in b", "b-again.txt": b"only in b"})
    va, _, _ = _push(store_uri, "datasets", "a", a)
    vb, added, moved = _push(store_uri, "datasets", "b", b)
    packs = [k for k in added if k.startswith("packs/")]
    assert len(packs) == 1 and added[packs[0]] == len(b"only in b") and moved == sum(added.values())
    store = open_store(store_uri)
    where = {(v.name, r["path"]): (r["object"], r["offset"])
             for v in (va, vb) for r in catalog.read_manifest(store, "datasets", v.name, v.version)}
    assert where[("a", "shared.bin")] == where[("b", "sub/also-shared.bin")]
    assert where[("b", "b.txt")] == where[("b", "b-again.txt")]
    _assert_stored_once(store)
    _pulls_verified(store, va, a, tmp_path / "out-a")
    _pulls_verified(store, vb, b, tmp_path / "out-b")


def _contents(tag, n=300):
    return {f"{tag}{i}.txt": f"{tag}{i}".encode() for i in range(n)}


def test_index_merges_leftover_segments_and_relists_after_a_concurrent_merge(store_uri, tmp_path):
    a, b_only = _contents("a"), _contents("b")
    store = open_store(store_uri)
    catalog.push(store, "datasets", "a", _tree(tmp_path / "a", a))
    (root,) = store.list("index/")  # a small index is one segment
    # a merge killed between writing its segment and deleting the one it replaced leaves two
    store.put_bytes(catalog.INDEX + "0" * 64 + ".parquet", store.get_bytes(root))
    # and a segment listed by this push is merged away (deleted) by another before this push reads it
    calls, real = [], store.list

    def listing(prefix):
        if prefix.startswith("index/"):
            calls.append(prefix)
            if len(calls) == 1:
                yield catalog.INDEX + "f" * 64 + ".parquet"
        yield from real(prefix)

    store.list = listing
    src = _tree(tmp_path / "b", a | b_only)
    before, store.bytes_up = _sizes(store), 0
    v = catalog.push(store, "datasets", "b", src)
    added = {k: n for k, n in _sizes(store).items() if k not in before}
    assert len(calls) == 2  # read again after the vanished segment
    (pack,) = (k for k in added if k.startswith("packs/"))
    assert added[pack] == sum(map(len, b_only.values())) and store.bytes_up == sum(added.values())
    assert len(list(real("index/"))) == 1 and _index_entries_valid(store) == 600  # merged, no entry twice
    _pulls_verified(store, v, src, tmp_path / "out")


def test_index_segments_split_by_sha256_prefix(store_uri, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "INDEX_SPLIT", 40)
    a, b = _tree(tmp_path / "a", _contents("a")), _tree(tmp_path / "b", _contents("b"))
    store = open_store(store_uri)
    catalog.push(store, "datasets", "a", a)
    catalog.push(store, "datasets", "b", b)
    segments = {k: pq.read_table(io.BytesIO(store.get_bytes(k))).to_pylist() for k in store.list("index/")}
    prefixes = {k: "".join(k[len(catalog.INDEX):].split("/")[:-1]) for k in segments}
    assert {len(p) for p in prefixes.values()} == {1, 2}  # 300 entries split once, 600 split again in places
    for key, rows in segments.items():  # each segment small, holding only the content of its prefix
        assert 0 < len(rows) <= 40 and all(r["sha256"].hex().startswith(prefixes[key]) for r in rows)
    assert _index_entries_valid(store) == 600
    both = _tree(tmp_path / "both", _contents("a") | _contents("b"))
    v, added, moved = _push(store_uri, "datasets", "both", both)  # found through the split index: no data moves
    assert set(added) == _meta(v) and moved == sum(added.values())
    _pulls_verified(store, v, both, tmp_path / "out")


def test_convert_stores_source_images_once(store_uri, kitti_root, tmp_path):
    from admlops.components.convert.lake import convert_with_store

    summary = convert_with_store(str(kitti_root), tmp_path / "coco", "kitti-3class", 0.2, 0, store_uri)
    store = open_store(store_uri)
    src, coco = (catalog.show(store, "datasets", r["name"], r["version"]) for r in (summary["source_version"], summary["dataset_version"]))
    source = {r["sha256"]: (r["object"], r["offset"]) for r in catalog.read_manifest(store, "datasets", src.name, src.version)}
    images = [r for r in catalog.read_manifest(store, "datasets", coco.name, coco.version) if r["role"] == "image"]
    assert len(images) == 20 and all(source[r["sha256"]] == (r["object"], r["offset"]) for r in images)
    _assert_stored_once(store)
    _pulls_verified(store, src, kitti_root, tmp_path / "src")
    _pulls_verified(store, coco, tmp_path / "coco", tmp_path / "out")


def test_file_changed_while_pushing_is_an_error_and_not_indexed(store_uri, tmp_path):
    src = _tree(tmp_path / "src", {"a.txt": b"before", "b.txt": b"other"})
    store = open_store(store_uri)
    real = store.list

    def listing(prefix):  # the index look-up comes between hashing and packing: change the file there
        if prefix.startswith("index/"):
            (src / "a.txt").write_bytes(b"after!")
        return real(prefix)

    store.list = listing
    with pytest.raises(StoreError, match=r"a.txt changed while being pushed to \S+/datasets/d/v"):
        catalog.push(store, "datasets", "d", src)
    assert list(store.list("index/")) == [] and catalog.list_versions(store, "datasets") == []


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


def test_corrupted_index_segment_is_a_store_error(store_uri, tmp_path):
    store = open_store(store_uri)
    catalog.push(store, "datasets", "d", _tree(tmp_path / "a", {"a.txt": b"a"}))
    (segment,) = store.list("index/")
    store.put_bytes(segment, b"not parquet")
    with pytest.raises(StoreError, match=rf"{segment}: corrupted index segment") as err:
        catalog.push(store, "datasets", "e", _tree(tmp_path / "b", {"a.txt": b"a"}))
    assert err.value.exit_code == 5 and str(err.value).startswith(store.uri(segment))
    store.delete(segment)  # as the message says: safe, the content is indexed again
    v = catalog.push(store, "datasets", "e", tmp_path / "b")
    assert _index_entries_valid(store) == 1
    _pulls_verified(store, v, tmp_path / "b", tmp_path / "out")


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
import sys, threading
from admlops import catalog
from admlops.objectstore import open_store
store, stop_at = open_store(sys.argv[1]), sys.argv[3]
real, lock = store.put_bytes, threading.Lock()
def put(key, data):
    if key.startswith(stop_at):
        with lock:  # one line, from the first thread to get here; every thread is held until the kill
            print("STOP", key, flush=True)
            threading.Event().wait()
    real(key, data)
store.put_bytes = put
catalog.PACK_TARGET = 1000  # many packs
catalog.push(store, "datasets", "killed", sys.argv[2])
"""


@pytest.mark.parametrize("stop_at", ["index/", "datasets/"])  # packs stored, not indexed / all indexed, not committed
def test_killed_push_leaves_no_visible_version(store_uri, tmp_path, stop_at):
    src = _tree(tmp_path / "src", {f"f{i}.bin": bytes([i]) * 900 for i in range(40)})
    proc = subprocess.Popen([sys.executable, "-c", KILL_PUSH, store_uri, str(src), stop_at], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith(f"STOP {stop_at}")
    proc.kill()
    proc.wait()
    store = open_store(store_uri)
    assert any(store.list("packs/")) and catalog.list_versions(store, "datasets") == []
    assert _index_entries_valid(store) == (0 if stop_at == "index/" else 40)
    # a later complete push commits; what the killed one indexed is not uploaded again
    v, added, moved = _push(store_uri, "datasets", "killed", src)
    assert v.files == 40 and moved == sum(added.values())
    assert (set(added) == _meta(v)) == (stop_at == "datasets/")
    assert _index_entries_valid(store) == 40
    _pulls_verified(store, v, src, tmp_path / "out")


def test_unreachable_endpoint_bounded_retries(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ADMLOPS_S3_MAX_ATTEMPTS", "3")
    store = open_store("s3://bucket/x")
    sent = []
    store.client.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))
    with pytest.raises(StoreError, match=r"cannot reach S3 endpoint http://127.0.0.1:9 \(gave up after 3 attempts\)"):
        store.get_bytes("k")
    assert len(sent) == 3


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
