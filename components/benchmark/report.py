"""The benchmark sweep as Markdown and as a self-contained HTML page (plots inline as base64 PNG: a KFP HTML
artifact needs no other file)."""
from __future__ import annotations

import html

import numpy as np

from admlops.htmlpage import page, plot_section, png_base64

from admlops.components.benchmark.benchmark import label

COLUMNS = ("runtime", "precision", "threads", "batch", "p50 (ms)", "p90 (ms)", "p99 (ms)", "images/s",
           "speed-up vs PyTorch (p50)", "load (s)", "artifact (MiB)", "inference memory (MiB)", "process peak (MiB)",
           "mAP@0.5", "mAP@0.5 vs PyTorch")


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table_rows(report: dict) -> list[list[str]]:
    out = []
    for r in report["rows"]:
        lat, mem = r["latency"], r["memory"]
        threads = f"{r['threads_used']}" if r["threads_used"] else "default"
        out.append([r["runtime"], r["precision"], threads, str(r["batch"]), _fmt(lat["p50_ms"], ".1f"),
                    _fmt(lat["p90_ms"], ".1f"), _fmt(lat["p99_ms"], ".1f"), _fmt(lat["throughput_ips"], ".1f"),
                    _fmt(r["speedup_p50"], ".2f"), _fmt(r["load_s"], ".2f"), _fmt(r["artifact_bytes"] / 2**20, ".1f"),
                    _fmt(mem["added_mib"], ".0f"), _fmt(mem["process_peak_mib"], ".0f"), _fmt(r["mAP50"], ".3f"),
                    _fmt(None if r["mAP50_diff"] is None else 100 * r["mAP50_diff"], "+.1f") + " pt"])
    return out


STAGE_STATS = (("mean", "mean_ms"), ("p50", "p50_ms"), ("p90", "p90_ms"))


def stage_table(report: dict) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the per-stage latencies (a 3D voxel detector's rows: voxelization, network,
    post-processing); none when no row has stages."""
    rows = [r for r in report["rows"] if "stages" in r]
    if not rows:
        return [], []
    names = list(rows[0]["stages"])
    columns = ["runtime:precision threads", "batch"] + [f"{n.replace('_', '-')} {s} (ms)" for n in names
                                                        for s, _ in STAGE_STATS]
    return columns, [[label(r), str(r["batch"])] + [_fmt(r["stages"][n][k], ".1f") for n in names
                                                    for _, k in STAGE_STATS] for r in rows]


def _md_table(columns, rows) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _html_table(columns, rows) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def kernel_rows(report: dict) -> list[list[str]]:
    """runtime:precision -> the kernels it ran (one line per runtime and precision)."""
    seen = {f"{r['runtime']}:{r['precision']}": r.get("kernels") or "-" for r in report["rows"]}
    return [[k, v] for k, v in seen.items()]


def not_deployable_rows(report: dict) -> list[list[str]]:
    """The targets that failed their export gate and were not timed: measured against allowed drop."""
    return [[f"{g['backend']}:{g['precision']}", f"{g['drop_points']:+.2f}", f"{g['allowed_points']:.2f}"]
            for g in report.get("not_deployable", [])]


KERNEL_COLUMNS = ("runtime:precision", "kernels")
NOT_DEPLOYABLE_COLUMNS = ("target (failed its parity gate: not timed)", "drop (points)", "allowed (points)")


def sections(report: dict) -> list[tuple[str, tuple[str, ...] | list[str], list[list[str]]]]:
    """(title, columns, rows) of the tables after the main one, those with rows."""
    out = [("Stages (per call)", *stage_table(report)), ("Kernels", KERNEL_COLUMNS, kernel_rows(report)),
           ("Not deployable", NOT_DEPLOYABLE_COLUMNS, not_deployable_rows(report))]
    return [(title, columns, rows) for title, columns, rows in out if rows]


def machine_lines(report: dict) -> list[str]:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    return [f"CPU: {m['cpu']}; {m['logical_cores']} logical / {m['physical_cores']} physical cores, "
            f"{m['usable_cores']} usable; flags: {', '.join(m['cpu_flags']) or 'none of note'}; int8 kernel "
            f"class {m.get('int8_kernels', '-')}",
            f"Platform: {m['platform']}, Python {m['python']}",
            f"Versions: {versions}",
            f"Inputs: {report['images']} val {report['input_unit']}s, "
            f"input {report['input_shape']}, {report['warmup']} warm-up calls "
            f"per batch size, {report['repeats']} pass(es), {report['rounds']} round(s) of the rows; threads 'default' = the runtime's own choice",
            f"Timed: {report['timed']}",
            f"Memory: {report['memory_definition']}"]


def render_markdown(report: dict) -> str:
    lines = ["# Deploy benchmark", "", *_md_table(COLUMNS, table_rows(report))]
    for title, columns, rows in sections(report):
        lines += ["", f"## {title}", "", *_md_table(columns, rows)]
    return "\n".join(lines + [""] + [f"* {line}" for line in machine_lines(report)]) + "\n"


def plots(report: dict) -> list[tuple[str, str]]:
    """(title, base64 PNG): per-call latency histograms per batch size; p50 latency against throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    labels = list(dict.fromkeys(label(r) for r in rows))
    sizes = report["batch_sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3), squeeze=False)
    for ax, b in zip(axes[0], sizes, strict=True):
        sel = [r for r in rows if r["batch"] == b]
        top = max(max(r["timings_ms"]) for r in sel)
        bins = np.linspace(0, top * 1.05, 40)
        for r in sel:
            ax.hist(r["timings_ms"], bins=bins, histtype="step", label=label(r))
        ax.set(title=f"batch {b}", xlabel="latency per call (ms)", ylabel="calls")
    axes[0][0].legend(fontsize=7)
    out = [("Latency per call", png_base64(fig))]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in labels:
        sel = sorted((r for r in rows if label(r) == name), key=lambda r: r["batch"])
        x = [r["latency"]["p50_ms"] for r in sel]
        y = [r["latency"]["throughput_ips"] for r in sel]
        ax.plot(x, y, marker="o", label=name)
        for r, xi, yi in zip(sel, x, y, strict=True):
            ax.annotate(f"b{r['batch']}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="p50 latency per call (ms)", ylabel="throughput (images/s)")
    ax.legend(fontsize=7)
    out.append(("Latency against throughput (one point per batch size)", png_base64(fig)))
    plt.close("all")
    return out


def render_html(report: dict) -> str:
    esc = html.escape
    parts = ["<h1>Deploy benchmark</h1>", _html_table(COLUMNS, table_rows(report))]
    for title, columns, rows in sections(report):
        parts += [f"<h2>{esc(title)}</h2>", _html_table(columns, rows)]
    parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in machine_lines(report)) + "</ul>")
    parts += [plot_section(title, png) for title, png in plots(report)]
    return page("Deploy benchmark", parts, width=1200,
                style="table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}")
