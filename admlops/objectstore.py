"""The one object-store layer: every step and command reads and writes through ``open_store(uri)``
(``open_store(None)`` or ``open_store("")``: the default store, ``$ADMLOPS_STORE`` or ~/.admlops/store).

* ``file:///path`` or a plain path: the local filesystem (the embedded default store);
* ``s3://bucket/prefix``: S3 or an S3-compatible server (MinIO, Ceph) through boto3 and s3transfer.
  Credentials come only from boto3's standard chain (environment, profiles, web identity / instance
  roles; on Kubernetes, a Secret mapped to the environment). ``AWS_ENDPOINT_URL`` /
  ``AWS_ENDPOINT_URL_S3`` select another endpoint; ``ADMLOPS_S3_ADDRESSING`` (``path``, the default,
  or ``virtual``) the addressing style. Requests are retried with exponential backoff
  (``ADMLOPS_S3_MAX_ATTEMPTS``, default 5) and then fail with an error naming the endpoint.

Keys are '/'-separated and relative to the store's root. Writes are atomic per object.
"""
from __future__ import annotations

import os
import shutil
import threading
import uuid
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import urlparse

from admlops.errors import AdmlopsError


DEFAULT_STORE = os.environ.get("ADMLOPS_STORE", str(Path.home() / ".admlops" / "store"))
TRANSFER_THREADS = 16  # the S3 store's transfer manager: parts in flight, across all files at once


class StoreError(AdmlopsError):
    """A storage operation failed; the message names the store, the key and the cause (exit 5)."""

    exit_code = 5


class NoSuchObject(StoreError):
    """The key holds no object (a StoreError, so it exits 5 too); lets callers tell "absent" from "failed"."""


def check_key(key: str) -> str:
    """A safe relative key: no absolute paths, no '..', no empty or '.' parts, no backslashes."""
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")) or not parts:
        raise StoreError(f"unsafe object key {key!r}: expected a relative path without '..'")
    return key


class ObjectStore(ABC):
    """Byte counters (``bytes_up``, ``bytes_down``) let tests and benchmarks see what moved."""

    def __init__(self):
        self._lock = threading.Lock()
        self.bytes_up = 0
        self.bytes_down = 0

    def _count(self, up: int = 0, down: int = 0) -> None:
        with self._lock:
            self.bytes_up += up
            self.bytes_down += down

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """The URI of ``key`` (what KFP artifacts and lineage records carry)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, key: str, path: str | Path) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str, start: int | None = None, length: int | None = None) -> bytes: ...

    @abstractmethod
    def get_file(self, key: str, path: str | Path) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is no error."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (a '/'-terminated folder or a key prefix), in no particular order."""


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path):
        super().__init__()
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def uri(self, key: str = "") -> str:
        return (self.root / key).as_uri() + ("/" if key.endswith("/") else "") if key else self.root.as_uri()

    def _atomic_write(self, key: str, write) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            write(tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(key, lambda tmp: tmp.write_bytes(data))
        self._count(up=len(data))

    def put_file(self, key: str, path: str | Path) -> None:
        self._atomic_write(key, lambda tmp: shutil.copyfile(path, tmp))
        self._count(up=Path(path).stat().st_size)

    def get_bytes(self, key: str, start: int | None = None, length: int | None = None) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                if start:
                    f.seek(start)
                data = f.read() if length is None else f.read(length)
        except FileNotFoundError:
            raise NoSuchObject(f"{self.uri(key)}: no such object") from None
        self._count(down=len(data))
        return data

    def get_file(self, key: str, path: str | Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            raise NoSuchObject(f"{self.uri(key)}: no such object") from None
        self._count(down=Path(path).stat().st_size)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        head = prefix.rpartition("/")[0]
        folder = self.root / head if head else self.root
        if not folder.is_dir():
            return
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", client=None):
        super().__init__()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or s3_client()
        self.endpoint = self.client.meta.endpoint_url
        from boto3.s3.transfer import S3Transfer, TransferConfig

        # One transfer manager for the whole store: its thread pool bounds the parts in flight across
        # all files, however many files are being moved at once.
        self.transfer = S3Transfer(self.client, TransferConfig(max_concurrency=TRANSFER_THREADS))

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str = "") -> str:
        path = "/".join(p for p in (self.prefix, key) if p)
        return f"s3://{self.bucket}/{path}"

    def _call(self, what: str, key: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise NoSuchObject(f"{self.uri(key)}: no such object") from None
            raise StoreError(f"{what} {self.uri(key)} at {self.endpoint} failed: {code} {exc}") from None
        except BotoCoreError as exc:
            attempts = self.client.meta.config.retries.get("total_max_attempts")
            raise StoreError(f"{what} {self.uri(key)}: cannot reach S3 endpoint {self.endpoint} "
                             f"(gave up after {attempts} attempts): {exc}") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("upload", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)
        self._count(up=len(data))

    def put_file(self, key: str, path: str | Path) -> None:
        self._call("upload", key, self.transfer.upload_file, str(path), self.bucket, self._key(key))
        self._count(up=Path(path).stat().st_size)

    def get_bytes(self, key: str, start: int | None = None, length: int | None = None) -> bytes:
        kwargs = {}
        if start is not None or length is not None:
            begin = start or 0
            kwargs["Range"] = f"bytes={begin}-" + (str(begin + length - 1) if length is not None else "")
        resp = self._call("download", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key), **kwargs)
        data = self._call("download", key, resp["Body"].read)
        self._count(down=len(data))
        return data

    def get_file(self, key: str, path: str | Path) -> None:
        self._call("download", key, self.transfer.download_file, self.bucket, self._key(key), str(path))
        self._count(down=Path(path).stat().st_size)

    def exists(self, key: str) -> bool:
        try:
            self._call("stat", key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        except NoSuchObject:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> Iterator[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in self._call("list", prefix, list, pages):
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:]


def s3_client(max_attempts: int | None = None):
    """A boto3 S3 client from the standard credential chain, with retries, timeouts and a connection pool."""
    import boto3
    from botocore.config import Config

    attempts = max_attempts or int(os.environ.get("ADMLOPS_S3_MAX_ATTEMPTS", "5"))
    config = Config(
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=float(os.environ.get("ADMLOPS_S3_CONNECT_TIMEOUT", "5")),
        read_timeout=60,
        max_pool_connections=64,
        s3={"addressing_style": os.environ.get("ADMLOPS_S3_ADDRESSING", "path")},
    )
    return boto3.session.Session().client("s3", config=config)


def open_store(uri: str | Path | None = None) -> ObjectStore:
    """The store at ``uri``: ``s3://bucket/prefix``, ``file:///path`` or a plain local path; no URI (None or
    empty, as a step's ``store`` parameter left blank) is the default store, ``DEFAULT_STORE``."""
    text = str(uri or DEFAULT_STORE)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{text}: expected s3://bucket[/prefix]")
        return S3Store(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise StoreError(f"{text}: unsupported store scheme {parsed.scheme!r}; expected s3://, file:// or a path")
    return LocalStore(text)
