"""Push/pull throughput of the data lake against moto's S3 server, behind an added round-trip delay.

Compares, in one run and on the same data: admlops (catalog.push / catalog.pull: packing small files
into content-addressed packs, a content index, concurrency, s3transfer for large files), a naive
one-object-at-a-time boto3 loop, and s3transfer used directly (concurrent uploads/downloads of the same
files, one object each). Then, for admlops: re-pushing the unchanged data under the same name, and
pushing it under a second name (bytes moved and store growth: content is stored once per store).

    .venv/bin/python bench/store_bench.py [--rtt-ms 20] [--small 10000] [--large-mb 1024] [--naive-sample 500] [--skip-bare]

The naive loop is timed on the first ``--naive-sample`` small files (default 500) and scaled to all of
them (at +20 ms a full 10,000-file naive push alone takes about 10 minutes). Each scenario prints the
threads every side uses and what is timed, then a table of ratios (higher = admlops faster).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delay_proxy import DelayProxy  # noqa: E402


THREADS = 16  # the s3transfer side's caller threads and every S3Transfer's max_concurrency


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bucket_bytes(client, bucket: str, prefix: str) -> int:
    """Total size of the objects under ``prefix`` (from the listing: nothing is downloaded)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(obj["Size"] for page in pages for obj in page.get("Contents", []))


def make_small(root: Path, n: int) -> list[Path]:
    files = []
    for i in range(n):
        p = root / f"frames/{i // 1000:03d}/{i:06d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(1024 + (i * 37) % 3072))
        files.append(p)
    return files


def make_large(root: Path, total_mb: int, count: int = 4) -> list[Path]:
    files = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        p = root / f"lidar_{i}.bin"
        with open(p, "wb") as f:
            for _ in range(total_mb // count):
                f.write(os.urandom(1 << 20))  # distinct content: nothing deduplicates
        files.append(p)
    return files


def run_scenario(label, rtt, src, files, client_factory, naive_files):
    from boto3.s3.transfer import TransferConfig

    from admlops import catalog
    from admlops.objectstore import TRANSFER_THREADS, open_store

    client = client_factory()
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    rel = [p.relative_to(src).as_posix() for p in files]
    n = len(files)
    nbytes = sum(p.stat().st_size for p in files)
    results = {}

    # naive: one object at a time (on a sample for small files), rate scaled to all files
    naive = files[:naive_files]
    t = timed(lambda: [client.put_object(Bucket=bucket, Key=f"naive/{r}", Body=p.read_bytes()) for p, r in zip(naive, rel, strict=False)])
    results["naive_push"] = t * n / len(naive)
    t = timed(lambda: [client.get_object(Bucket=bucket, Key=f"naive/{r}")["Body"].read() for r in rel[: len(naive)]])
    results["naive_pull"] = t * n / len(naive)

    # s3transfer directly: its transfer manager, concurrent, one object per file
    cfg = TransferConfig(max_concurrency=THREADS)
    from boto3.s3.transfer import S3Transfer

    xfer = S3Transfer(client, cfg)

    def st_push():
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda pr: xfer.upload_file(str(pr[0]), bucket, f"raw/{pr[1]}"), zip(files, rel, strict=True)))

    def st_pull(dest):
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda r: xfer.download_file(bucket, f"raw/{r}", str(dest / r.replace("/", "_"))), rel))

    results["s3transfer_push"] = timed(st_push)
    with tempfile.TemporaryDirectory() as d:
        results["s3transfer_pull"] = timed(lambda: st_pull(Path(d)))

    store = open_store(f"s3://{bucket}/lake")
    results["admlops_push"] = timed(lambda: catalog.push(store, "datasets", "bench", src))
    version = catalog.list_versions(store, "datasets", "bench")[0][1]
    with tempfile.TemporaryDirectory() as d:
        results["admlops_pull"] = timed(lambda: catalog.pull(store, "datasets", "bench", version, Path(d) / "out"))
    for row, push_name in (("repush", "bench"), ("second_name", "bench-copy")):  # content already in the store
        again = open_store(f"s3://{bucket}/lake")
        size = bucket_bytes(client, bucket, "lake/")
        results[f"admlops_{row}"] = timed(lambda: catalog.push(again, "datasets", push_name, src))
        results[f"{row}_bytes"] = again.bytes_up
        results[f"{row}_growth"] = bucket_bytes(client, bucket, "lake/") - size

    print(f"\n## {label}: {n} files, {nbytes / 2**20:.0f} MiB, added RTT {rtt} ms")
    scaled = f", timed on {len(naive)} of {n} files and scaled to all" if len(naive) < n else ""
    print(f"naive: 1 thread, put_object of each file's bytes, get_object read into memory{scaled}")
    print(f"s3transfer: {THREADS} caller threads sharing one S3Transfer (max_concurrency={THREADS}), "
          "upload_file / download_file per file")
    print(f"admlops: catalog.push / catalog.pull, {catalog.WORKERS} worker threads (files of 1 MiB and more through "
          f"the store's S3Transfer, max_concurrency={TRANSFER_THREADS}); small files in packs, looked up in the index")
    print("timed: wall time of each whole call; admlops push from the files on disk to the committed version "
          "(hashing, index look-ups, packing included), pull to sha256-verified files on disk")
    print("| | naive loop | s3transfer | admlops | admlops vs naive | admlops vs s3transfer |")
    print("| --- | --- | --- | --- | --- | --- |")
    for op in ("push", "pull"):
        nv, st, ad = results[f"naive_{op}"], results[f"s3transfer_{op}"], results[f"admlops_{op}"]
        print(f"| {op} | {nv:.1f} s{'*' if len(naive) < n else ''} | {st:.1f} s | {ad:.1f} s | {nv / ad:.1f}x | {st / ad:.2f}x |")
    for row, what in (("repush", "re-push unchanged (same name)"), ("second_name", "push the same data under a second name")):
        print(f"| {what} | | | {results[f'admlops_{row}']:.1f} s, {results[f'{row}_bytes']:,} bytes moved, "
              f"store +{results[f'{row}_growth']:,} bytes | | |")
    if len(naive) < n:
        print(f"\\* naive loop timed on {len(naive)} of {n} files, scaled to all")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt-ms", type=float, default=20.0, help="added round trip (the proxy delays each direction by half)")
    ap.add_argument("--small", type=int, default=10000, help="number of small files (1-4 KiB)")
    ap.add_argument("--large-mb", type=int, default=1024, help="total size of the large files (4 files)")
    ap.add_argument("--naive-sample", type=int, default=500, help="small files the naive loop is timed on (then scaled)")
    ap.add_argument("--skip-bare", action="store_true", help="skip the bare-loopback run")
    args = ap.parse_args()

    import logging

    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log

    for k, v in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"moto's S3 server runs in this process (threads sharing the GIL with the clients); {os.cpu_count()} CPUs")
    work = Path(tempfile.mkdtemp(prefix="admlops-bench-"))
    try:
        small_root, large_root = work / "small", work / "large"
        small, large = make_small(small_root, args.small), make_large(large_root, args.large_mb)
        setups = [(args.rtt_ms, DelayProxy(host, port, args.rtt_ms / 2))]
        if not args.skip_bare:
            setups.append((0, None))
        for rtt, proxy in setups:
            endpoint = proxy.url if proxy else f"http://{host}:{port}"
            os.environ["AWS_ENDPOINT_URL"] = endpoint

            def client():
                return boto3.client("s3", config=Config(max_pool_connections=64, s3={"addressing_style": "path"}))

            if small:
                run_scenario("small files", rtt, small_root, small, client, args.naive_sample)
            run_scenario("large files", rtt, large_root, large, client, len(large))
            if proxy:
                proxy.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
