"""Shared fixtures: a small synthetic KITTI dataset and its COCO conversion, built once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def kitti_root(tmp_path_factory) -> Path:
    from admlops.components.synth.kitti import synth_kitti

    return synth_kitti(tmp_path_factory.mktemp("kitti") / "kitti", frames=20, seed=7, workers=2)


@pytest.fixture(scope="session")
def coco_dir(kitti_root, tmp_path_factory) -> Path:
    from admlops.components.convert.kitti_coco import kitti_to_coco

    out = tmp_path_factory.mktemp("coco") / "coco"
    kitti_to_coco(kitti_root, out)
    return out


NUSCENES = dict(scenes=2, samples_per_scene=4, sweeps_per_sample=2)  # 8 samples: 4 train, 4 val scenes' worth


@pytest.fixture(scope="session")
def nuscenes_root(tmp_path_factory) -> Path:
    """Synthetic nuScenes (v1.0-mini) under ``data/nuscenes``: mmdet3d's update_infos_to_v2 reopens the devkit at
    the hard-coded ``./data/nuscenes``, so the reference must run from the directory above ``data``."""
    from admlops.components.synth.nuscenes import synth_nuscenes

    return synth_nuscenes(tmp_path_factory.mktemp("nus") / "data" / "nuscenes", seed=5, workers=2, **NUSCENES)


def reference_tools() -> Path | None:
    """mmdet3d's bundled tools/ (create_data.py and the dataset converters), if its wheel ships them."""
    import importlib.util

    spec = importlib.util.find_spec("mmdet3d")
    mim = Path(spec.origin).parent / ".mim" if spec else None
    return mim if mim and (mim / "tools" / "create_data.py").is_file() else None


@pytest.fixture(scope="session")
def nuscenes_reference(nuscenes_root) -> Path:
    """``nuscenes_root`` after mmdet3d's own ``create_data.py nuscenes`` wrote its infos and GT database into it."""
    import subprocess
    import sys

    mim = reference_tools()
    if mim is None:
        pytest.skip("mmdet3d's wheel ships no tools/create_data.py here")
    cmd = [sys.executable, str(mim / "tools" / "create_data.py"), "nuscenes", "--root-path", "./data/nuscenes",
           "--out-dir", "./data/nuscenes", "--extra-tag", "nuscenes", "--version", "v1.0-mini", "--max-sweeps", "10"]
    proc = subprocess.run(cmd, cwd=nuscenes_root.parent.parent, env=dict(os.environ, PYTHONPATH=str(mim)),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return nuscenes_root


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("PYTHONHASHSEED", os.environ.get("PYTHONHASHSEED", "0"))


FAKE_KEY_ID = "AKIDTESTONLY0000"  # moto accepts any credentials; these are not real
FAKE_SECRET = "test-secret-not-real-0000000000000000000"


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server in HTTP mode on loopback: a real S3 protocol peer, driven through boto3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_endpoint


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path):
    """The same storage tests run against the embedded local store and a real S3 protocol server."""
    if request.param == "local":
        return str(tmp_path / "store")
    request.getfixturevalue("s3_env")
    import uuid

    import boto3

    bucket = f"admlops-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lake"
