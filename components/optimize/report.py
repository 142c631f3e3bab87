"""The optimisation report: one row per model variant (a parent and what pruning, distillation or quantization-aware
training made) with its parameters, MACs, accuracy, latency per deploy target (or the gate a target failed: not
timed, not deployable) and artifact size, and an accuracy-versus-latency plot with the
Pareto front marked (a variant is on the front when no other is both faster and at least as accurate).

A variant is ``{"name", "model", "report", "bench"}``: a model directory (train's layout), evaluate's report
directory (metrics.json) and benchmark's results directory (benchmark.json) of the same dataset. Parameters and
MACs are counted by Torch-Pruning on the dataset's example input for every variant alike (components/prune); the
task's gated metric comes from metrics.json; latency is the p50 of one batch-1 call at the runtime's default
threads, per backend and precision.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from admlops import htmlpage
from admlops.tasks import get_task


def _latency(bench: dict) -> dict[str, dict]:
    rows = [r for r in bench["rows"] if r["batch"] == 1 and not r["threads"]]
    return {f"{r['runtime']} {r['precision']}": {"p50_ms": r["latency"]["p50_ms"], "bytes": r["artifact_bytes"]}
            for r in rows}


def _gates(bench: dict) -> dict[str, dict]:
    """Per deploy target the benchmark saw, its parity gate: passed, or failed with its drop (not timed then)."""
    failed = {f"{g['backend']} {g['precision']}": {"passed": False, "drop_points": g["drop_points"],
                                                   "allowed_points": g["allowed_points"]}
              for g in bench.get("not_deployable", [])}
    timed = {t: {"passed": True} for t in _latency(bench) if not t.startswith("pytorch")}
    return {**timed, **failed}


def rows(variants: list[dict], dataset_dir: str | Path) -> list[dict]:
    """The report's rows, in the order given; parameters and MACs counted alike for every variant on
    ``dataset_dir``'s example input."""
    from admlops.components.prune.prune import model_size

    out = []
    for v in variants:
        metrics = json.loads((Path(v["report"]) / "metrics.json").read_text())
        task = get_task(metrics["task"])
        bench = json.loads((Path(v["bench"]) / "benchmark.json").read_text())
        out.append({"name": v["name"], "metric": task.metric.key, "value": task.metric.of(metrics),
                    **model_size(v["model"], dataset_dir), "latency": _latency(bench), "gates": _gates(bench)})
    return out


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For (latency, accuracy) points: whether each is on the front (no other is faster and at least as accurate,
    or as fast and more accurate)."""
    return [not any((lo < l and ao >= a) or (lo <= l and ao > a) for lo, ao in points) for l, a in points]


def write(variants: list[dict], dataset_dir: str | Path, out: str | Path, target: str = "") -> dict:
    """``out``/report.html and optimize.json of ``variants`` measured on ``dataset_dir``; ``target``: the deploy target the plot's latency axis is (default:
    the first deploy target every row has, PyTorch only when none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = rows(variants, dataset_dir)
    shared = [t for t in table[0]["latency"] if all(t in r["latency"] for r in table)]
    targets = [t for t in shared if not t.startswith("pytorch")] + [t for t in shared if t.startswith("pytorch")]
    target = target or (targets[0] if targets else "")  # a deploy target where every row has one
    points = [(r["latency"][target]["p50_ms"], r["value"]) for r in table] if target else []
    front = pareto(points) if points else [False] * len(table)
    for r, on in zip(table, front):
        r["pareto"] = on
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    all_targets = sorted({t for r in table for t in (*r["latency"], *r["gates"])})
    head = ["variant", "params (M)", "MACs (G)", table[0]["metric"]] + [f"{t} p50 ms" for t in all_targets] + \
        [f"{t} MB" for t in all_targets] + ["Pareto"]

    def latency(r, t):
        gate = r["gates"].get(t, {})
        if gate.get("passed") is False:
            return f"gate failed (drop {gate['drop_points']:+.2f}, allowed {gate['allowed_points']:.2f})"
        return cell(r["latency"].get(t, {}).get("p50_ms"), ".1f")

    def cell(x, fmt):
        return "–" if x is None else format(x, fmt)

    body = [f"<tr>{''.join(f'<th>{html.escape(h)}</th>' for h in head)}</tr>"]
    for r in table:
        cells = [r["name"], cell(r["params"] and r["params"] / 1e6, ".2f"), cell(r["macs"] and r["macs"] / 1e9, ".2f"),
                 cell(r["value"], ".3f")]
        cells += [latency(r, t) for t in all_targets]
        cells += [cell(r["latency"].get(t, {}).get("bytes") and r["latency"][t]["bytes"] / 1e6, ".1f") for t in all_targets]
        cells += ["yes" if r["pareto"] else ""]
        body.append(f"<tr>{''.join(f'<td>{html.escape(str(c))}</td>' for c in cells)}</tr>")
    on_front = ", ".join(r["name"] for r in table if r["pareto"])
    parts = [f"<h1>Model optimisation</h1><table>{''.join(body)}</table>",
             f"<p>Pareto front ({html.escape(target or 'no target every variant has')}): {html.escape(on_front)}</p>"]
    if points:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (lat, acc), r in zip(points, table):
            ax.scatter([lat], [acc], marker="*" if r["pareto"] else "o", s=120 if r["pareto"] else 50)
            ax.annotate(r["name"], (lat, acc), textcoords="offset points", xytext=(5, 5))
        front_points = sorted(p for p, on in zip(points, front) if on)
        ax.plot(*zip(*front_points), linestyle="--", color="grey", label="Pareto front")
        ax.set_xlabel(f"{target} p50 latency, batch 1 (ms)")
        ax.set_ylabel(table[0]["metric"])
        ax.legend()
        parts.append(htmlpage.plot_section(f"Accuracy against latency ({target})", htmlpage.png_base64(fig)))
        plt.close(fig)
    (out / "report.html").write_text(htmlpage.page("Model optimisation", parts,
                                                   style="td,th{padding:3px 8px;text-align:right}"))
    result = {"target": target, "rows": table}
    (out / "optimize.json").write_text(json.dumps(result, indent=2))
    return result
