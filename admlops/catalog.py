"""Immutable, content-addressed versions of a directory in an object store: datasets and models.

Store layout::

    objects/sha256/<aa>/<sha256>            a file stored whole (large files): the key is the content
    packs/sha256/<aa>/<sha256>              many small files concatenated (one PUT instead of thousands)
    index/sha256/[<a>/<b>/...]<sha256>.parquet  where packed content lies (sha256, object, offset, size): a
                                            segment holds the content whose sha256 starts with its folders' digits
    <kind>/<name>/<version>/info.json       who, when, counts, extra records (lineage for models)
    <kind>/<name>/<version>/manifest.parquet  path, size, sha256, role, object, offset: written LAST

Content is stored once per store, whatever name, kind or version brought it. A large file is found by
its object key; a small one in the index: a push lists ``index/`` once and reads only the segments
whose prefix its files' sha256s start with (a small index is one root segment; a segment over
INDEX_SPLIT entries splits in 16 by the next hex digit, so segments stay small however large the
store). Each prefix that gains content gets a merged segment, and the segments it replaces are
deleted. A push thus costs a listing plus a few requests per segment it touches, and reads no other
version's manifest. Segments are written only once their packs are stored, and before the manifest,
the commit point: readers only see versions whose manifest exists, so an upload killed midway leaves
nothing visible, and no index entry points at missing data. Pulls verify every file's sha256.
"""
from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from tqdm import tqdm

from admlops.objectstore import NoSuchObject, ObjectStore, StoreError, check_key
from admlops.localfs import atomic_dir, file_sha256

KINDS = ("datasets", "models")
PACK_FILE_MAX = 1 << 20  # files below 1 MiB go into packs
PACK_TARGET = 32 << 20  # a pack is closed once it holds 32 MiB
WORKERS = 16
COLUMNS = ("path", "size", "sha256", "role", "object", "offset")
INDEX = "index/sha256/"  # [<a>/[<b>/...]]<segment sha256>.parquet: sha256, object, offset, size of packed content starting ab...
INDEX_SPLIT = 50_000  # entries: a bigger segment is split in 16 by the next hex digit (about 2.5 MB each at most)


@dataclass(frozen=True)
class Version:
    kind: str
    name: str
    version: str
    manifest_sha256: str
    files: int
    bytes: int
    info: dict

    def ref(self) -> dict:
        """What lineage records keep of a version: name, version and manifest sha256."""
        return {"name": self.name, "version": self.version, "manifest_sha256": self.manifest_sha256}

    def record(self, store: ObjectStore) -> dict:
        """What a step's output keeps of a version it read or wrote: ``ref()`` and the version's URI in ``store``."""
        return self.ref() | {"uri": store.uri(_prefix(self.kind, self.name, self.version))}


def _check_name(value: str, what: str) -> str:
    if not value or "/" in value or value in (".", "..") or value.startswith("."):
        raise StoreError(f"invalid {what} {value!r}: expected a name without '/'")
    return value


def _prefix(kind: str, name: str, version: str | None = None) -> str:
    if kind not in KINDS:
        raise StoreError(f"unknown kind {kind!r}; expected one of {KINDS}")
    parts = [kind, _check_name(name, "name")] + ([_check_name(version, "version")] if version else [])
    return "/".join(parts) + "/"


def _object_key(digest: str) -> str:
    return f"objects/sha256/{digest[:2]}/{digest}"


def _manifest_bytes(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: [r[c] for r in rows] for c in COLUMNS}, schema=pa.schema([
        ("path", pa.string()), ("size", pa.int64()), ("sha256", pa.string()), ("role", pa.string()),
        ("object", pa.string()), ("offset", pa.int64()),
    ]))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _read_parquet(data: bytes):
    """A parquet table from bytes with pyarrow's low-level reader, on the calling thread: the dataset reader's
    background IO threads release Python buffers after the interpreter has begun to exit, which aborts the process
    now and then ("terminate called without an active exception") after a step's work is done."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(io.BytesIO(data), pre_buffer=False).read(use_threads=False)


def read_manifest(store: ObjectStore, kind: str, name: str, version: str) -> list[dict]:
    import pyarrow.parquet as pq

    data = store.get_bytes(_prefix(kind, name, version) + "manifest.parquet")
    return _read_parquet(data).to_pylist()


def list_versions(store: ObjectStore, kind: str, name: str | None = None) -> list[tuple[str, str]]:
    """Committed (name, version) pairs, oldest first by commit time within each name."""
    prefix = _prefix(kind, name) if name else f"{kind}/"
    found = []
    for key in store.list(prefix):
        parts = key.split("/")
        if len(parts) == 4 and parts[3] == "manifest.parquet":
            found.append((parts[1], parts[2]))
    infos = {}
    for n, v in found:
        infos[(n, v)] = json.loads(store.get_bytes(_prefix(kind, n, v) + "info.json")).get("created", 0)
    return sorted(found, key=lambda nv: (nv[0], infos[nv]))


def names(store: ObjectStore, kind: str) -> list[str]:
    """The names with at least one committed version, sorted (a listing; no version's info is read)."""
    return sorted({key.split("/")[1] for key in store.list(f"{kind}/")
                   if len(key.split("/")) == 4 and key.endswith("/manifest.parquet")})


def committed(store: ObjectStore, kind: str, name: str, version: str) -> bool:
    """Whether ``name@version`` is a committed version (its manifest, the commit point, exists)."""
    return store.exists(_prefix(kind, name, version) + "manifest.parquet")


def show(store: ObjectStore, kind: str, name: str, version: str) -> Version:
    prefix = _prefix(kind, name, version)
    if not committed(store, kind, name, version):
        raise StoreError(f"{store.uri(prefix)}: no committed version {name}@{version}")
    info = json.loads(store.get_bytes(prefix + "info.json"))
    rows = read_manifest(store, kind, name, version)
    return Version(kind, name, version, info["manifest_sha256"], len(rows), sum(r["size"] for r in rows), info)


def _index_schema():
    import pyarrow as pa

    return pa.schema([("sha256", pa.binary(32)), ("object", pa.string()), ("offset", pa.int64()), ("size", pa.int64())])


def _read_segment(store: ObjectStore, key: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = store.get_bytes(key)
    try:
        return _read_parquet(data).cast(_index_schema())
    except pa.ArrowException as exc:
        raise StoreError(f"{store.uri(key)}: corrupted index segment ({exc}); deleting it is safe: what it "
                         "indexed is uploaded again when next pushed") from None


def _read_index(store: ObjectStore, digests) -> dict[str, tuple[list[str], "pa.Table"]]:
    """The index segments that may hold ``digests``: prefix -> (segment keys, their entries)."""
    import pyarrow as pa

    if not digests:
        return {}
    while True:
        listed: dict[str, list[str]] = {}
        for key in store.list(INDEX):  # one request per 1,000 segments
            *digits, _ = key[len(INDEX):].split("/")
            listed.setdefault("".join(digits), []).append(key)
        depth = max(map(len, listed), default=0)
        needed = {d[:n] for d in digests for n in range(depth + 1)} & listed.keys()
        every = [k for p in needed for k in listed[p]]
        try:
            with ThreadPoolExecutor(WORKERS) as pool:
                tables = dict(zip(every, pool.map(lambda k: _read_segment(store, k), every)))
        except NoSuchObject:  # merged away by a concurrent push since the listing; its merged segment is listed now
            continue
        return {p: (listed[p], pa.concat_tables([tables[k] for k in listed[p]])) for p in needed}


def _lookup(index: dict, digests) -> dict[str, tuple[str, int]]:
    """sha256 -> (pack key, offset) of the ``digests`` the index holds. Plain Python over the segments' rows:
    pyarrow.compute's thread pool aborts the interpreter at exit now and then ("terminate called without an
    active exception"), which fails a pipeline step after its work is done."""
    wanted = {bytes.fromhex(d) for d in digests}
    found = {}
    for _, table in index.values():
        for r in table.to_pylist():
            if r["sha256"] in wanted:
                found.setdefault(r["sha256"].hex(), (r["object"], r["offset"]))
    return found


def _add_to_index(store: ObjectStore, index: dict, entries: list[tuple[str, str, int, int]]) -> None:
    """Merge ``entries`` (sha256, pack key, offset, size) into the index: each goes to the shortest prefix read
    for it (the root when there is none); each such prefix gets its merged segment(s), then the segments they
    replace are deleted. Called only once the packs are stored, so no entry points at missing data; a
    concurrent merge at worst leaves an extra segment, which the next merge of its prefix takes in."""
    import pyarrow as pa

    by_prefix: dict[str, list] = {}
    for entry in entries:
        prefix = next((entry[0][:n] for n in range(len(entry[0])) if entry[0][:n] in index), "")
        by_prefix.setdefault(prefix, []).append(entry)

    def merge(prefix: str) -> None:
        old_keys, old = index.get(prefix, ([], _index_schema().empty_table()))
        digests, packs, offsets, sizes = zip(*by_prefix[prefix], strict=True)
        new = pa.table({"sha256": [bytes.fromhex(d) for d in digests], "object": packs, "offset": offsets, "size": sizes},
                       schema=_index_schema())
        first: dict[bytes, dict] = {}
        for r in pa.concat_tables([old, new]).to_pylist():  # one entry per content, even after a race
            first.setdefault(r["sha256"], r)
        merged = pa.Table.from_pylist(list(first.values()), schema=_index_schema())
        written = _write_segments(store, prefix, merged)
        for stale in old_keys:
            if stale not in written:
                store.delete(stale)

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(merge, by_prefix))


def _write_segments(store: ObjectStore, prefix: str, table) -> list[str]:
    """Store ``table`` as the segment of ``prefix``, or split by the next hex digit while it has more than
    INDEX_SPLIT entries (so a segment stays small however large the store grows); returns the keys written."""
    import pyarrow.parquet as pq

    if table.num_rows > INDEX_SPLIT:
        rows: dict[str, list[int]] = {}
        for i, digest in enumerate(table["sha256"].to_pylist()):
            rows.setdefault(digest.hex()[len(prefix)], []).append(i)
        return [k for digit, idx in sorted(rows.items()) for k in _write_segments(store, prefix + digit, table.take(idx))]
    buf = io.BytesIO()
    pq.write_table(table, buf)
    key = INDEX + "".join(f"{c}/" for c in prefix) + hashlib.sha256(buf.getvalue()).hexdigest() + ".parquet"
    store.put_bytes(key, buf.getvalue())
    return [key]


def push(
    store: ObjectStore,
    kind: str,
    name: str,
    src: str | Path,
    version: str | None = None,
    roles: dict[str, str] | None = None,
    extra: dict | None = None,
) -> Version:
    """Publish directory ``src`` as ``<kind>/<name>/<version>``; returns the committed version.

    ``version`` defaults to ``v`` + the first 12 hex digits of the content hash, so the same content
    always gets the same version. ``roles`` maps a path prefix to a role (e.g. ``images/`` -> ``image``);
    ``extra`` is stored in info.json (models keep their lineage there). Pushing an existing version
    with the same content moves no bytes; with other content it is an error (versions are immutable).
    """
    src = Path(src)
    if not src.is_dir():
        raise StoreError(f"{src}: not a directory")
    paths = sorted(p for p in src.rglob("*") if p.is_file())
    rels = [check_key(p.relative_to(src).as_posix()) for p in paths]
    sizes = [p.stat().st_size for p in paths]
    roles = roles or {}

    def role_of(rel: str) -> str:
        return next((r for prefix, r in sorted(roles.items(), key=lambda kv: -len(kv[0])) if rel.startswith(prefix)), "file")

    def hash_and_store_large(path: Path) -> str:
        # Large files go up as soon as they are hashed (content-addressed, so idempotent): hashing
        # overlaps uploading. Small files wait to be looked up in the index and packed.
        digest = file_sha256(path)
        if path.stat().st_size >= PACK_FILE_MAX and not store.exists(_object_key(digest)):
            store.put_file(_object_key(digest), path)
        return digest

    with ThreadPoolExecutor(WORKERS) as pool:
        hashes = list(tqdm(pool.map(hash_and_store_large, paths), total=len(paths), desc=f"hash+upload {name}",
                           unit="file", leave=False))
    listing = "".join(f"{r}\t{h}\t{role_of(r)}\n" for r, h in zip(rels, hashes, strict=True)).encode()
    content = hashlib.sha256(listing).hexdigest()
    version = version or f"v{content[:12]}"
    prefix = _prefix(kind, name, version)
    if store.exists(prefix + "manifest.parquet"):
        existing = show(store, kind, name, version)
        if existing.info.get("content_sha256") != content:
            raise StoreError(f"{store.uri(prefix)} already exists with other content: versions are immutable")
        return existing
    location = {h: (_object_key(h), 0) for h, s in zip(hashes, sizes, strict=True) if s >= PACK_FILE_MAX}
    small = {h: (p, s) for p, h, s in zip(paths, hashes, sizes, strict=True) if s < PACK_FILE_MAX}
    index = _read_index(store, small)
    location.update(_lookup(index, small))
    packs, pack, pack_bytes = [], [], 0
    for h, (path, size) in small.items():
        if h not in location:
            pack.append((path, h))
            pack_bytes += size
            if pack_bytes >= PACK_TARGET:
                packs.append(pack)
                pack, pack_bytes = [], 0
    if pack:
        packs.append(pack)

    def upload_pack(members) -> dict[str, tuple[str, int]]:
        blob, offsets = bytearray(), {}
        for path, h in members:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != h:  # the index must never point at other content
                raise StoreError(f"{path} changed while being pushed to {store.uri(prefix)}")
            offsets[h] = len(blob)
            blob += data
        digest = hashlib.sha256(blob).hexdigest()
        key = f"packs/sha256/{digest[:2]}/{digest}"
        store.put_bytes(key, bytes(blob))
        return {h: (key, off) for h, off in offsets.items()}

    with ThreadPoolExecutor(WORKERS) as pool:
        placed = {}
        for done in tqdm(pool.map(upload_pack, packs), total=len(packs), desc=f"push {name}", unit="pack", leave=False):
            placed.update(done)
    _add_to_index(store, index, [(h, key, off, small[h][1]) for h, (key, off) in placed.items()])  # before the manifest
    location.update(placed)
    rows = [
        {"path": r, "size": s, "sha256": h, "role": role_of(r), "object": location[h][0], "offset": location[h][1]}
        for r, h, s in zip(rels, hashes, sizes, strict=True)
    ]
    manifest = _manifest_bytes(rows)
    info = {
        "kind": kind, "name": name, "version": version, "created": time.time(), "created_by": _who(),
        "files": len(rows), "bytes": sum(sizes), "content_sha256": content,
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(), **(extra or {}),
    }
    store.put_bytes(prefix + "info.json", json.dumps(info, indent=2).encode())
    store.put_bytes(prefix + "manifest.parquet", manifest)  # the commit point
    return Version(kind, name, version, info["manifest_sha256"], len(rows), sum(sizes), info)


def _who() -> str:
    try:
        return os.environ.get("ADMLOPS_USER") or getpass.getuser()
    except OSError:
        return "unknown"


def pull(store: ObjectStore, kind: str, name: str, version: str, dest: str | Path,
         only: Callable[[str], bool] | None = None) -> Version:
    """Materialise a committed version at ``dest`` (atomically), verifying every file's sha256; with ``only``, the
    files whose paths it accepts (the returned Version is the whole version's)."""
    meta = show(store, kind, name, version)
    rows = [r for r in read_manifest(store, kind, name, version) if only is None or only(r["path"])]
    for row in rows:  # before anything is written: no '..', no absolute paths, no keys outside the content area
        check_key(row["path"])
        if not check_key(row["object"]).startswith(("packs/sha256/", "objects/sha256/")):
            raise StoreError(f"unsafe object key {row['object']!r} in the manifest of {name}@{version}")
    by_object: dict[str, list[dict]] = {}
    for row in rows:
        by_object.setdefault(row["object"], []).append(row)
    with atomic_dir(dest) as tmp:

        def fetch(item):
            key, members = item
            if key.startswith("packs/"):
                lo = min(r["offset"] for r in members)
                hi = max(r["offset"] + r["size"] for r in members)
                blob = store.get_bytes(key, lo, hi - lo)
                for r in members:
                    _write_verified(tmp, r, blob[r["offset"] - lo : r["offset"] - lo + r["size"]], store.uri(key))
            else:
                first = tmp / members[0]["path"]
                first.parent.mkdir(parents=True, exist_ok=True)
                store.get_file(key, first)
                if file_sha256(first) != members[0]["sha256"]:
                    raise StoreError(f"{store.uri(key)}: corrupted object: sha256 of {members[0]['path']} does not match the manifest")
                for r in members[1:]:
                    _write_verified(tmp, r, first.read_bytes(), store.uri(key))

        with ThreadPoolExecutor(WORKERS) as pool:
            list(tqdm(pool.map(fetch, by_object.items()), total=len(by_object), desc=f"pull {name}@{version}", unit="object", leave=False))
    return meta


def _write_verified(root: Path, row: dict, data: bytes, where: str) -> None:
    if len(data) != row["size"] or hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise StoreError(f"{where}: corrupted object: sha256 of {row['path']} does not match the manifest")
    path = root / row["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
