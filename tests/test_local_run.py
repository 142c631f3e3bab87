"""`admlops run --local` output: one console line per task, full logs in <run>/logs, an index page whose HTML
artifacts open as .html files, and a failure that names the task and shows its log's tail."""
import io
import re

import pytest
from kfp import dsl
from kfp.dsl import HTML, Output

from admlops.pipelines import local, registry


@dsl.component(base_image="ghcr.io/admlops/cpu:src-test", install_kfp_package=False)
def chatty(lines: int, page: Output[HTML]):
    for i in range(lines):
        print(f"progress line {i}")
    with open(page.path, "w") as f:
        f.write("<!doctype html><html><body><h1>report</h1></body></html>")


@dsl.component(base_image="ghcr.io/admlops/cpu:src-test", install_kfp_package=False)
def failing(after: int):
    print("about to fail")
    raise SystemExit(f"the cause is here ({after})")


@dsl.pipeline(name="tiny")
def tiny(lines: int = 50, fail: bool = False):
    first = chatty(lines=lines).set_display_name("chatty")
    with dsl.If(fail == True):  # noqa: E712 (a KFP condition, not a Python comparison)
        failing(after=lines).after(first).set_display_name("failing")


@pytest.fixture
def tiny_registered(monkeypatch):
    monkeypatch.setitem(registry.PIPELINES, "tiny", tiny)


def _run(tmp_path, capsys, **params):
    return local.run_local("tiny", params, tmp_path / "store"), capsys.readouterr()


def test_one_line_per_task_and_logs_in_files(tmp_path, capsys, tiny_registered):
    run_dir, out = _run(tmp_path, capsys, lines=50)
    console = out.out + out.err
    assert "progress line" not in console and "executor" not in console.lower()
    assert "non-Python base image" not in console
    (line,) = [l for l in console.splitlines() if l.strip()]
    assert re.match(rf"chatty\s+SUCCESS\s+\d+\.\d s\s+{re.escape(str(run_dir / 'logs' / 'chatty.log'))}$", line)
    log = (run_dir / "logs" / "chatty.log").read_text()
    assert all(f"progress line {i}" in log for i in range(50))
    index = (run_dir / "index.html").read_text()
    assert 'href="chatty/page.html"' in index and 'href="logs/chatty.log"' in index
    assert (run_dir / "chatty" / "page.html").read_text().startswith("<!doctype html>")


def test_verbose_streams_the_logs(tmp_path, capsys, tiny_registered, monkeypatch):
    run_dir = local.run_local("tiny", {"lines": 3}, tmp_path / "store", verbose=True)
    out = capsys.readouterr().out
    assert all(f"progress line {i}" in out for i in range(3)) and str(run_dir / "logs" / "chatty.log") in out


def test_a_failed_task_is_named_with_its_log_tail(tmp_path, capsys, tiny_registered):
    with pytest.raises(local.PipelineFailed) as info:
        local.run_local("tiny", {"lines": 2, "fail": True}, tmp_path / "store")
    message = str(info.value)
    assert "task failing failed" in message and "the cause is here (2)" in message and "failing.log" in message
    assert info.value.exit_code == 4
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert [l.split()[:2] for l in lines] == [["chatty", "SUCCESS"], ["failing", "FAILURE"]]


@dsl.component(base_image="ghcr.io/admlops/cpu:src-test", install_kfp_package=False)
def voice(item: int, lines: int):
    import time

    for j in range(lines):
        print(f"item {item} line {j}", flush=True)
        time.sleep(0.002)  # keeps the iterations' output overlapping in time


@dsl.pipeline(name="fan")
def fan(lines: int = 200):
    with dsl.ParallelFor([0, 1, 2]) as item:
        voice(item=item, lines=lines)


def test_parallel_iterations_each_keep_their_own_log(tmp_path, capsys, monkeypatch):
    """kfp.local runs a ParallelFor's iterations on threads at once: each one's output lands in its own log, none in
    another's, and the console is the caller's again afterwards (a per-task swap of sys.stdout restored a closed log)."""
    import sys

    monkeypatch.setitem(registry.PIPELINES, "fan", fan)
    stdout = sys.stdout
    run_dir = local.run_local("fan", {"lines": 200}, tmp_path / "store")
    assert sys.stdout is stdout
    logs = sorted((run_dir / "logs").rglob("voice.log"))
    assert [p.relative_to(run_dir / "logs").parent.name for p in logs] == [f"for-loop-2-iteration-{i}" for i in range(3)]
    assert all(f'href="{p.relative_to(run_dir).as_posix()}"' in (run_dir / "index.html").read_text() for p in logs)
    items = []
    for log in logs:
        said = re.findall(r"^\s*item (\d) line (\d+)$", log.read_text(), flags=re.M)
        assert len({i for i, _ in said}) == 1, f"{log.name} holds more than one iteration's output"
        assert sorted(int(j) for _, j in said) == list(range(200))
        items.append(said[0][0])
    assert sorted(items) == ["0", "1", "2"]
    print("after the run")
    assert "after the run" in capsys.readouterr().out
