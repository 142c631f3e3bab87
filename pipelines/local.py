"""Run a pipeline on this machine with kfp.local (no cluster, no Docker): the embedded default store.

Every task runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``) and its artifacts
land under ``<store>/runs/<pipeline>-<timestamp>/<task>/<output>``. The console shows one line per task
(name, status, time, where its log is; on a terminal the running task's line shows its latest log line);
each task's full log — kfp's executor input and output, the component's own output and progress — goes to
``<run>/logs/<task>.log``, and ``verbose`` streams it as well. ``<run>/index.html`` links every artifact,
HTML artifacts through ``.html`` copies that a browser renders from disk.
"""
from __future__ import annotations

import contextlib
import html
import io
import json
import os
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path

from admlops.errors import StepFailed

LOG_TAIL_LINES = 40


class PipelineFailed(StepFailed):
    """A task of a local run failed; the message names it and its log."""


class _Tee(io.TextIOBase):
    """Writes to a log file, optionally to the console too, and remembers the last non-empty line."""

    def __init__(self, log, echo=None):
        self.log, self.echo, self.last = log, echo, ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self.log.flush()
        if self.echo:
            self.echo.write(text)
            self.echo.flush()
        lines = [s for s in text.replace("\r", "\n").splitlines() if s.strip()]
        if lines:
            self.last = lines[-1].strip()
        return len(text)


class _ByThread(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` for a whole run: each write goes to the stream its thread routed it to, else
    to ``default``. kfp.local runs a ParallelFor's iterations on a thread pool, and ``contextlib.redirect_stdout``
    per task swaps one process-wide attribute: concurrent tasks would restore each other's (closed) logs."""

    def __init__(self, default):
        self.default, self.local = default, threading.local()

    @contextlib.contextmanager
    def routed(self, stream):
        self.local.stream = stream
        try:
            yield
        finally:
            self.local.stream = None

    def write(self, text: str) -> int:
        return (getattr(self.local, "stream", None) or self.default).write(text)

    def flush(self) -> None:
        (getattr(self.local, "stream", None) or self.default).flush()


class _StepConsole:
    """The one console line of a running task; on a terminal it is repainted with elapsed time and the log's
    latest line, elsewhere it is printed once when the task ends."""

    def __init__(self, out, live: bool):
        self.out, self.live = out, live

    @contextlib.contextmanager
    def running(self, task: str, tee: _Tee):
        start, done = time.monotonic(), threading.Event()

        def paint():
            while not done.wait(0.5):
                width = shutil.get_terminal_size((100, 20)).columns
                text = f"{task:<14} running {time.monotonic() - start:6.0f} s  {tee.last}"
                self.out.write("\r" + text[:width - 1].ljust(width - 1))
                self.out.flush()

        painter = threading.Thread(target=paint, daemon=True) if self.live else None
        if painter:
            painter.start()
        try:
            yield lambda: time.monotonic() - start
        finally:
            done.set()
            if painter:
                painter.join()
                self.out.write("\r")

    def done(self, task: str, status: str, seconds: float, log: Path) -> None:
        width = shutil.get_terminal_size((100, 20)).columns if self.live else 0
        text = f"{task:<14} {status:<8} {seconds:7.1f} s  {log}"
        self.out.write((text.ljust(width - 1) if width else text) + "\n")
        self.out.flush()


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def _quiet_tasks(verbose: bool, steps: list[dict], pipeline_log: io.StringIO):
    """Route each task's kfp.local output to its log file and keep one console line per task; kfp.local's
    pipeline-level lines go to ``pipeline_log`` (and the console too when ``verbose``).

    kfp.local (pinned at 2.17.0) prints a task's executor input, streamed subprocess output and outputs to
    ``sys.stdout`` from ``task_dispatcher.run_single_task_implementation`` (in the thread that runs the task),
    which the DAG orchestrator calls through the module attribute: wrapping that one function routes all of it,
    task by task.
    """
    from kfp.local import executor_input_utils, task_dispatcher

    original = task_dispatcher.run_single_task_implementation
    console_out = sys.stdout
    console = _StepConsole(console_out, live=console_out.isatty() and not verbose)
    streams = _ByThread(_Tee(pipeline_log, console_out if verbose else None))

    def run_task(**kwargs):
        # a ParallelFor's iteration runs as a nested DAG: "<run>/for-loop-2-iteration-0" holds its tasks
        run, *nested = Path(kwargs["pipeline_resource_name"]).parts
        task = "/".join([*nested, executor_input_utils.get_local_task_resource_name(kwargs["component_name"])])
        run_dir = Path(kwargs["pipeline_root"]) / run
        log = run_dir / "logs" / f"{task}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            tee = _Tee(f, console_out if verbose else None)
            with console.running(task, tee) as elapsed, streams.routed(tee):
                outputs, status = original(**kwargs)
            seconds = elapsed()
        steps.append({"task": task, "status": status.name, "seconds": round(seconds, 1), "log": str(log)})
        console.done(task, status.name, seconds, log)
        return outputs, status

    task_dispatcher.run_single_task_implementation = run_task
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(streams), contextlib.redirect_stderr(streams):
            # a warning per task that the image is not a python:* one: true and irrelevant without containers
            warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
            yield
    finally:
        task_dispatcher.run_single_task_implementation = original


def write_index(run_dir: Path, steps: list[dict]) -> Path:
    """``<run>/index.html``: each task's status, time, log and artifacts; HTML artifacts (files that KFP names
    after the output, e.g. ``html``) get a ``.html`` copy so a browser renders them from disk."""
    rows = []
    for step in steps:
        task_dir = run_dir / step["task"]
        links = []
        for output in sorted(p for p in task_dir.iterdir() if p.name != "executor_output.json") if task_dir.is_dir() else []:
            target = output
            if output.is_file() and not output.suffix and output.read_bytes()[:512].lstrip().lower().startswith(
                    (b"<!doctype html", b"<html")):
                target = output.with_name(output.name + ".html")
                shutil.copyfile(output, target)
            links.append(f'<a href="{html.escape(target.relative_to(run_dir).as_posix())}">{html.escape(output.name)}</a>')
        log = Path(step["log"]).relative_to(run_dir).as_posix()
        rows.append(f"<tr><td>{html.escape(step['task'])}</td><td>{step['status']}</td><td>{step['seconds']:.1f} s</td>"
                    f'<td><a href="{html.escape(log)}">log</a></td><td>{" ".join(links)}</td></tr>')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(run_dir.name) + "</title>"
            "<style>body{font-family:sans-serif}td,th{padding:4px 10px;text-align:left}</style></head><body>"
            f"<h1>{html.escape(run_dir.name)}</h1><table><tr><th>task</th><th>status</th><th>time</th><th>log</th>"
            "<th>artifacts</th></tr>" + "".join(rows) + "</table></body></html>")
    (run_dir / "index.html").write_text(page)
    (run_dir / "steps.json").write_text(json.dumps(steps, indent=2))
    return run_dir / "index.html"


def run_local(name: str, params: dict, store: str | Path, verbose: bool = False) -> Path:
    """Run pipeline ``name`` with ``params``; returns the run's directory under ``store/runs``."""
    from kfp import local

    from admlops.pipelines.registry import pipeline, preflight

    func = pipeline(name)
    preflight(name, params)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # task logs and progress stream as they happen
    runs = Path(store).resolve() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    before = set(runs.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(runs), raise_on_error=True)
    if "store" in (func.component_spec.inputs or {}):
        params = {"store": str(store), **params}
    steps: list[dict] = []
    failure = None
    pipeline_log = io.StringIO()  # kfp.local's own pipeline-level lines (start, end, DAG warnings)
    with _quiet_tasks(verbose, steps, pipeline_log):
        try:
            func(**params)
        except RuntimeError as exc:
            failure = exc
    new = sorted(set(runs.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise PipelineFailed(f"kfp.local wrote no run directory under {runs}: {failure}\n{pipeline_log.getvalue()}")
    (new[-1] / "logs").mkdir(exist_ok=True)
    (new[-1] / "logs" / "pipeline.log").write_text(pipeline_log.getvalue())
    write_index(new[-1], steps)
    if failure is not None:
        failed = [s for s in steps if s["status"] != "SUCCESS"]
        if failed:
            log = Path(failed[-1]["log"])
            raise PipelineFailed(f"task {failed[-1]['task']} failed; its log is {log}; the last lines:\n{_tail(log)}")
        raise PipelineFailed(str(failure))
    return new[-1]
