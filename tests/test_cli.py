import subprocess
import sys

import pytest

from admlops.errors import UsageError

COMMANDS = [
    [], ["data"], ["data", "synth"], ["data", "synth", "kitti"], ["data", "convert"], ["train"], ["evaluate"],
    ["export"], ["benchmark"], ["run"], ["compile"], ["data", "push"], ["data", "pull"], ["data", "ls"], ["data", "show"], ["data", "infos"], ["data", "merge"], ["data", "analyze"],
    ["data", "validate"], ["data", "spec"],
    ["zoo"], ["zoo", "ls"], ["zoo", "show"], ["zoo", "promote"], ["submit"], ["upload"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "admlops")
def test_help(cmd):
    res = subprocess.run([sys.executable, "-m", "admlops.pipelines.cli", *cmd, "--help"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "usage: admlops" in res.stdout


def test_usage_error_exit_code():
    res = subprocess.run([sys.executable, "-m", "admlops.pipelines.cli", "train"], capture_output=True, text=True)
    assert res.returncode == 2 and "required" in res.stderr


def test_bad_param_is_a_usage_error():
    res = subprocess.run(
        [sys.executable, "-m", "admlops.pipelines.cli", "run", "detection2d", "--local", "--param", "nope=1"],
        capture_output=True, text=True,
    )
    assert res.returncode == 2 and "KEY=VALUE with KEY one of source" in res.stderr


def test_submit_usage_and_unreachable_host(capsys):
    from admlops.pipelines.cli import main

    assert main(["submit", "detection2d", "--host", "http://127.0.0.1:9", "--param", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    code = main(["submit", "detection2d", "--host", "http://127.0.0.1:9", "--param", "source=/data/kitti"])
    err = capsys.readouterr().err
    assert code == 6 and "127.0.0.1:9" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["compile", "nope"], "unknown pipeline 'nope': expected one of collect, detection2d"),
    (["compile", "--profile", "nope"], "unknown cluster profile 'nope': expected a path or one of a100"),
    (["data", "spec", "--definition", "nope"], "unknown dataset definition 'nope'"),
    (["data", "spec", "--definition", "missing/def.yaml"], "missing/def.yaml: dataset definition not found"),
])
def test_unknown_names_are_usage_errors(argv, message, capsys, tmp_path):
    from admlops.pipelines.cli import main

    code = main(argv + (["--out-dir", str(tmp_path)] if argv[0] == "compile" else []))
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert code == (3 if "not found" in message else 2)


def test_every_product_error_maps_to_its_exit_code():
    """One base class carries the exit code; main() maps every subclass the same way."""
    from admlops import errors
    from admlops.objectstore import StoreError
    from admlops.pipelines.local import PipelineFailed
    from admlops.pipelines.submit import KfpApiError, RunFailed

    from admlops.components.train_distributed.trainjob import TrainJobFailed

    codes = {errors.UsageError: 2, errors.InputError: 3, PipelineFailed: 4, RunFailed: 4, TrainJobFailed: 4, StoreError: 5,
             KfpApiError: 6}
    for cls, code in codes.items():
        assert issubclass(cls, errors.AdmlopsError) and cls.exit_code == code, cls


@pytest.mark.parametrize("argv, message", [
    (["kitti", "--frames", "0"], "frames must be >= 1, got 0"),
    (["kitti", "--frames", "-3"], "frames must be >= 1, got -3"),
    (["nuscenes", "--scenes", "11"], "scenes must be in 1..10 (the mini split's scene names), got 11"),
    (["nuscenes", "--scenes", "0"], "scenes must be in 1..10 (the mini split's scene names), got 0"),
    (["nuscenes", "--samples", "0"], "need samples_per_scene >= 1 and 0 <= sweeps_per_sample <= 9, got 0 and 2"),
    (["nuscenes", "--sweeps", "10"], "need samples_per_scene >= 1 and 0 <= sweeps_per_sample <= 9, got 4 and 10"),
])
def test_synth_bad_sizes_are_usage_errors(argv, message, capsys, tmp_path):
    """A size the synthetic generators cannot make is a usage error (exit 2) naming the value, not a traceback,
    and nothing is written."""
    from admlops.pipelines.cli import main

    out = tmp_path / "out"
    code = main(["data", "synth", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert (code, err.strip()) == (2, f"admlops: error: {message}")
    assert not out.exists()


def test_the_old_parameter_name_is_taken_with_a_warning(capsys):
    """``kitti_root`` was renamed ``source`` (it also carried nuScenes sources): the old name still parses, for one
    release, to the new one, and says so."""
    from admlops.pipelines.registry import parse_params

    assert parse_params("detection3d", ["kitti_root=/data/k"]) == parse_params("detection3d", ["source=/data/k"]) \
        == {"source": "/data/k"}
    assert "parameter kitti_root is now source" in capsys.readouterr().err
    with pytest.raises(UsageError, match="KEY one of source"):
        parse_params("detection2d", ["kitti=/data/k"])
