import subprocess
import sys

import pytest

COMMANDS = [
    [], ["data"], ["data", "synth"], ["data", "synth", "kitti"], ["data", "convert"], ["train"], ["evaluate"],
    ["export"], ["benchmark"], ["run"], ["compile"], ["data", "push"], ["data", "pull"], ["data", "ls"], ["data", "show"], ["data", "infos"], ["data", "merge"], ["data", "analyze"],
    ["data", "validate"], ["data", "spec"],
    ["zoo"], ["zoo", "ls"], ["zoo", "show"], ["zoo", "promote"],
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
    assert res.returncode == 2 and "KEY=VALUE with KEY one of kitti_root" in res.stderr


def test_submit_usage_and_unreachable_host(capsys):
    from admlops.pipelines.cli import main

    assert main(["submit", "detection2d", "--host", "http://127.0.0.1:9", "--param", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    code = main(["submit", "detection2d", "--host", "http://127.0.0.1:9", "--param", "kitti_root=/data/kitti"])
    err = capsys.readouterr().err
    assert code == 1 and "127.0.0.1:9" in err and "Traceback" not in err
