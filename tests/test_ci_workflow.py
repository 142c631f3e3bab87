"""The CI workflow (.github/workflows/ci.yml): tests, drift check, images, upload, and on main a cluster run
that fails the workflow when it fails. Every admlops command it runs must parse with today's CLI."""
import re
import shlex
from pathlib import Path

import yaml

from admlops.images import IMAGES
from admlops.pipelines.cli import build_parser

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "ci.yml"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _admlops_commands(script: str) -> list[list[str]]:
    """``admlops ...`` invocations of a step's shell script, with ${{ }} and $VARS replaced by dummies."""
    text = re.sub(r"\$\{\{[^}]*\}\}", "X", script.replace("\\\n", " "))
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_:]*\}?", "X", text)
    out = []
    for line in text.splitlines():
        if "bin/admlops " in line:
            out.append(shlex.split(line.split("bin/admlops ", 1)[1].split("&&")[0].split("|")[0]))
    return out


def test_jobs_and_order():
    jobs = _workflow()["jobs"]
    assert list(jobs) == ["test", "images", "image-deploy", "upload-and-run"]
    assert jobs["images"]["needs"] == "test" and jobs["image-deploy"]["needs"] == "images"
    assert jobs["upload-and-run"]["needs"] == ["images", "image-deploy"]
    steps = {s.get("name"): s for s in jobs["test"]["steps"]}
    assert steps["Tests (the README's test command)"]["run"].strip() == ".ci/run"
    drift = next(s for s in jobs["test"]["steps"] if "drift" in s.get("name", ""))
    assert "admlops compile" in drift["run"] and "exit 1" in drift["run"]
    deploy = next(s for s in jobs["image-deploy"]["steps"] if "build-push" in s.get("uses", ""))
    assert set(jobs["images"]["strategy"]["matrix"]["image"]) | {"deploy"} == set(IMAGES)
    assert deploy["with"]["file"] == "images/deploy/Dockerfile" and "TRAIN_IMAGE=" in deploy["with"]["build-args"]
    for name in IMAGES:
        assert (WORKFLOW.parents[2] / "images" / name / "Dockerfile").is_file()


def test_main_branch_run_waits_and_fails_with_the_run():
    steps = _workflow()["jobs"]["upload-and-run"]["steps"]
    run = next(s for s in steps if "submit" in s.get("run", ""))
    assert run["if"] == "github.ref == 'refs/heads/main'"
    (cmd,) = _admlops_commands(run["run"])
    assert cmd[0] == "submit" and "--wait" in cmd
    upload = next(s for s in steps if "upload" in s.get("run", "") and "submit" not in s.get("run", ""))
    assert _admlops_commands(upload["run"])[0][0] == "upload"


def test_every_admlops_command_parses():
    parser = build_parser()
    commands = [c for job in _workflow()["jobs"].values() for s in job["steps"] for c in _admlops_commands(s.get("run", ""))]
    assert len(commands) >= 3
    for cmd in commands:
        parser.parse_args(cmd)  # SystemExit(2) on an unknown flag


def test_no_credentials_in_the_workflow():
    text = WORKFLOW.read_text()
    assert not re.search(r"(?i)(aws_secret_access_key|password|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{16,}", text)
    env = _workflow()["jobs"]["upload-and-run"]["env"]
    assert env["ADMLOPS_KFP_TOKEN"] == "${{ secrets.KFP_TOKEN }}"
