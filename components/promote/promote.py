"""Gated promotion: a candidate zoo model takes the ``production`` alias only when every gate passes.

Gates (each reports measured, allowed and by how much it missed):

* **accuracy** — the candidate and the current production model are evaluated on the same dataset version with
  the same code (evaluate: the model's task); no class's per-class number (the task's ``per_class``: AP@0.5 for a
  2D detector, 3D AP40 moderate for a KITTI voxel detector) may drop by more than ``ap_tolerance`` points. Without
  a production model there is nothing to regress from and the gate passes, saying so.
* **parity** — the candidate's deploy gates (export: every backend x precision against PyTorch) all passed.
* **latency** — for each ``backend:precision`` with a budget, the candidate's benchmarked p50 at batch 1 is
  within it (milliseconds, from the zoo record's benchmark.json).

Writes ``promotion.json`` and ``promotion.md``; promotes (admlops.zoo.promote, who and when recorded) only when
all passed, otherwise raises PromotionBlocked (exit 4) with the report's failing lines.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from admlops import catalog, refs, zoo
from admlops.errors import UsageError
from admlops.localfs import atomic_dir
from admlops.objectstore import open_store
from admlops.tasks import get_task


def parse_budgets(text: str) -> dict[str, float]:
    """``onnxruntime:fp32=40,openvino:int8=15`` -> {"onnxruntime:fp32": 40.0, ...} (p50 ms at batch 1)."""
    budgets = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            if not sep or ":" not in key:
                raise ValueError
            budgets[key.strip()] = float(value)
        except ValueError:
            raise UsageError(f"latency budget {item!r}: expected BACKEND:PRECISION=MILLISECONDS") from None
    return budgets


def accuracy_gate(candidate: dict, production: dict | None, tolerance: float) -> dict:
    """Per class, the candidate's number against production's (evaluate's records: their task's ``per_class``), the
    drop in points."""
    if production is None:
        return {"gate": "accuracy", "passed": True, "detail": "no production model: nothing to regress from",
                "classes": {}}
    task = get_task(candidate["task"])
    ours_by_class = task.per_class(candidate)
    classes, failed = {}, []
    for name, prod in task.per_class(production).items():
        ours = ours_by_class.get(name, 0.0)
        drop = round((prod - ours) * task.metric.points_per_unit, 4)
        classes[name] = {"candidate": ours, "production": prod, "drop_points": drop, "allowed_points": tolerance}
        if drop > tolerance:
            failed.append(f"{name} {task.per_class_label} dropped {drop:.2f} points (allowed {tolerance:.2f})")
    return {"gate": "accuracy", "passed": not failed, "detail": "; ".join(failed) or
            f"no class dropped more than {tolerance:.2f} points", "classes": classes}


def parity_gate(info: dict) -> dict:
    gates = info.get("gates")
    if not gates:
        return {"gate": "parity", "passed": False, "detail": "the candidate has no deploy gates recorded (export them)"}
    failed = zoo.failed_gates(info)
    return {"gate": "parity", "passed": not failed, "detail": "; ".join(failed) or
            f"all {len(gates['gates'])} deploy gates passed"}


def latency_gate(benchmark: dict | None, budgets: dict[str, float]) -> dict:
    if not budgets:
        return {"gate": "latency", "passed": True, "detail": "no latency budgets set", "targets": {}}
    rows = {f"{r['runtime']}:{r['precision']}": r for r in (benchmark or {}).get("rows", [])
            if r["batch"] == 1 and r["threads"] == min(x["threads"] for x in benchmark["rows"])}
    targets, failed = {}, []
    for key, budget in budgets.items():
        row = rows.get(key)
        if row is None:
            failed.append(f"{key}: not benchmarked")
            continue
        p50 = row["latency"]["p50_ms"]
        targets[key] = {"p50_ms": p50, "budget_ms": budget}
        if p50 > budget:
            failed.append(f"{key} p50 {p50:.1f} ms over its budget {budget:.1f} ms by {p50 - budget:.1f} ms")
    return {"gate": "latency", "passed": not failed, "detail": "; ".join(failed) or "every target within budget",
            "targets": targets}


def render(report: dict) -> str:
    lines = [f"# Promotion of {report['model']}@{report['candidate']} to {report['alias']}", "",
             f"**{'PROMOTED' if report['passed'] else 'BLOCKED'}** (production was {report['production'] or 'none'})",
             "", "| gate | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {g['gate']} | {'pass' if g['passed'] else 'FAIL'} | {g['detail']} |" for g in report["gates"]]
    return "\n".join(lines) + "\n"


def promote_gated(name: str, candidate: str, dataset_dir: str | Path, out: str | Path, store_uri: str = "",
                  alias: str = "production", ap_tolerance: float = 1.0, latency_budgets: str = "") -> dict:
    """Evaluate zoo model ``name`` at ``candidate`` (a version or an alias) and the current ``alias`` holder on
    ``dataset_dir`` (convert's layout), apply the gates, publish the report at ``out`` and promote if all pass."""
    from admlops.components.evaluate.evaluate import evaluate

    if ap_tolerance < 0:
        raise UsageError(f"ap_tolerance must be >= 0 points, got {ap_tolerance}")
    budgets = parse_budgets(latency_budgets)
    store = open_store(store_uri)
    version = refs.find(store, "models", name, candidate)
    info = catalog.show(store, "models", name, version).info
    current = zoo.aliases(store, name).get(alias, {}).get("version")
    with tempfile.TemporaryDirectory(prefix="admlops-promote-") as tmp:
        metrics = {}
        for role, v in (("candidate", version), ("production", current)):
            if v is None or (role == "production" and v == version):
                continue
            catalog.pull(store, "models", name, v, Path(tmp) / role)
            metrics[role] = evaluate(dataset_dir, Path(tmp) / role, Path(tmp) / f"{role}-eval")
        bench = Path(tmp) / "candidate" / "metrics" / "benchmark.json"
        benchmark = json.loads(bench.read_text()) if bench.is_file() else None
    gates = [accuracy_gate(metrics["candidate"], metrics.get("production"), ap_tolerance), parity_gate(info),
             latency_gate(benchmark, budgets)]
    report = {"model": name, "candidate": version, "alias": alias, "production": current, "dataset": str(dataset_dir),
              "passed": all(g["passed"] for g in gates), "gates": gates,
              "metrics": metrics}
    with atomic_dir(out) as tmp:
        (tmp / "promotion.json").write_text(json.dumps(report, indent=2))
        (tmp / "promotion.md").write_text(render(report))
    if not report["passed"]:
        failing = "; ".join(f"{g['gate']}: {g['detail']}" for g in gates if not g["passed"])
        raise zoo.PromotionBlocked(f"{name}@{version} not promoted to {alias}: {failing} (report: {Path(out)})")
    report["alias_record"] = zoo.promote(store, name, version, alias)
    return report
