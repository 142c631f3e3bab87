"""Dataset analysis: class balance, box geometry, image positions, truncation/occlusion, distance, empty
frames and label errors of a converted dataset (convert's output, read through its index.parquet); an unlabeled
collection (screen's output) is analysed by ``drive.py``.

Writes ``report.html`` (self-contained: plots embedded as PNG), ``summary.json`` and ``report.md``.
"""
from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

import numpy as np

from admlops.geometry import box_iou
from admlops.htmlpage import page, plot_section, png_base64
from admlops.localfs import atomic_dir

IMBALANCE_RATIO = 10.0  # warn when the largest class has this many times the objects of the smallest
DUPLICATE_IOU = 0.95


def label_errors(rows: list[dict]) -> list[dict]:
    """Degenerate boxes (under 1 px), boxes outside the image, and duplicates (same class, IoU >= 0.95)."""
    errors = []
    by_frame: dict[str, list[dict]] = {}
    for r in rows:
        by_frame.setdefault(r["frame"], []).append(r)
        if r["width"] < 1 or r["height"] < 1:
            errors.append({"frame": r["frame"], "kind": "degenerate", "label": r["source_label"]})
        if r["x1"] < 0 or r["y1"] < 0 or r["x2"] > r["image_width"] or r["y2"] > r["image_height"]:
            errors.append({"frame": r["frame"], "kind": "outside_image", "label": r["source_label"]})
    for frame, objs in by_frame.items():
        boxes = [(o["x1"], o["y1"], o["x2"], o["y2"]) for o in objs]
        iou = box_iou(boxes, boxes)
        for i, a in enumerate(objs):
            for j, b in enumerate(objs[i + 1 :], start=i + 1):
                if a["category"] == b["category"] and not a["ignore"] and iou[i, j] >= DUPLICATE_IOU:
                    errors.append({"frame": frame, "kind": "duplicate", "label": a["source_label"]})
    return errors


def summarize(dataset_dir: str | Path) -> dict:
    import pyarrow.parquet as pq

    dataset_dir = Path(dataset_dir)
    rows = pq.read_table(dataset_dir / "index.parquet").to_pylist()
    info = json.loads((dataset_dir / "summary.json").read_text())
    frames = {s: json.loads((dataset_dir / "annotations" / f"{s}.json").read_text())["images"] for s in ("train", "val")}
    labelled = {r["frame"] for r in rows if not r["ignore"]}
    empty = sorted(Path(im["file_name"]).stem for s in frames.values() for im in s if Path(im["file_name"]).stem not in labelled)
    counts = {s: dict(Counter(r["category"] for r in rows if r["split"] == s and not r["ignore"])) for s in ("train", "val")}
    totals = Counter(r["category"] for r in rows if not r["ignore"])
    warnings = []
    for cat in info["categories"]:
        if totals.get(cat, 0) == 0:
            warnings.append(f"class {cat!r} has no labelled objects")
    present = [v for v in totals.values() if v]
    if present and max(present) / min(present) >= IMBALANCE_RATIO:
        big, small = max(totals, key=totals.get), min((c for c in totals if totals[c]), key=totals.get)
        warnings.append(f"class imbalance: {big} has {totals[big]} objects, {small} only {totals[small]}")
    for s in ("train", "val"):
        for cat in info["categories"]:
            if totals.get(cat) and not counts[s].get(cat):
                warnings.append(f"class {cat!r} has no objects in the {s} split")
    return {
        "dataset": str(dataset_dir), "categories": info["categories"], "frames": {s: len(v) for s, v in frames.items()},
        "objects": len([r for r in rows if not r["ignore"]]), "ignore_regions": len([r for r in rows if r["ignore"]]),
        "class_counts": counts, "empty_frames": empty, "label_errors": label_errors(rows), "warnings": warnings,
        "has_3d": any(r["distance"] is not None for r in rows),
        "has_lidar": any(r.get("num_lidar_pts") is not None for r in rows),
        "boxes_without_lidar_points": sum(1 for r in rows if not r["ignore"] and r.get("num_lidar_pts") == 0),
    }, rows


def plots(summary: dict, rows: list[dict], palette: list) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = summary["categories"]
    colours = {c: np.array(p) / 255 for c, p in zip(cats, palette, strict=True)}
    objs = [r for r in rows if not r["ignore"]]
    out = []
    fig, ax = plt.subplots(figsize=(6, 3))
    x = np.arange(len(cats))
    for k, s in enumerate(("train", "val")):
        ax.bar(x + (k - 0.5) * 0.4, [summary["class_counts"][s].get(c, 0) for c in cats], 0.4, label=s)
    ax.set_xticks(x, cats)
    ax.set_ylabel("objects")
    ax.legend()
    out.append(("Objects per class and split", png_base64(fig)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for c in cats:
        sel = [r for r in objs if r["category"] == c]
        axes[0].scatter([r["width"] for r in sel], [r["height"] for r in sel], s=4, color=colours[c], label=c)
        axes[1].hist([r["width"] / r["height"] for r in sel], bins=30, histtype="step", color=colours[c], label=c)
    axes[0].set(xlabel="box width (px)", ylabel="box height (px)")
    axes[1].set(xlabel="aspect ratio (w / h)", ylabel="objects")
    axes[0].legend()
    out.append(("Box size and aspect ratio", png_base64(fig)))
    fig, axes = plt.subplots(1, len(cats), figsize=(4 * len(cats), 2.2), squeeze=False)
    for ax, c in zip(axes[0], cats, strict=True):
        sel = [r for r in objs if r["category"] == c]
        cx = [((r["x1"] + r["x2"]) / 2) / r["image_width"] for r in sel]
        cy = [((r["y1"] + r["y2"]) / 2) / r["image_height"] for r in sel]
        ax.hist2d(cx, cy, bins=[24, 8], range=[[0, 1], [0, 1]], cmap="magma")
        ax.invert_yaxis()
        ax.set_title(c)
    out.append(("Where boxes are in the image (centre heatmap)", png_base64(fig)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    axes[0].hist([r["truncated"] for r in objs if r["truncated"] is not None], bins=20)
    axes[0].set(xlabel="truncation", ylabel="objects")
    occ = Counter(int(r["occluded"]) for r in objs if r["occluded"] is not None)
    axes[1].bar([str(k) for k in sorted(occ)], [occ[k] for k in sorted(occ)])
    axes[1].set(xlabel="occlusion level", ylabel="objects")
    out.append(("Truncation and occlusion", png_base64(fig)))
    if summary["has_3d"]:
        fig, ax = plt.subplots(figsize=(6, 3))
        for c in cats:
            ax.hist([r["distance"] for r in objs if r["category"] == c and r["distance"] is not None], bins=30,
                    histtype="step", color=colours[c], label=c)
        ax.set(xlabel="distance from the camera (m)", ylabel="objects")
        ax.legend()
        out.append(("Object distance", png_base64(fig)))
    if summary["has_lidar"]:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3))
        for c in cats:
            pts = [(r["distance"], r["num_lidar_pts"]) for r in objs if r["category"] == c and r["num_lidar_pts"] is not None]
            axes[0].hist([n for _, n in pts], bins=np.logspace(0, 4, 30), histtype="step", color=colours[c], label=c)
            axes[1].scatter([d for d, _ in pts], [max(n, 0.8) for _, n in pts], s=4, color=colours[c], label=c)
        axes[0].set(xscale="log", xlabel="LiDAR points in the box", ylabel="objects")
        axes[1].set(yscale="log", xlabel="distance (m)", ylabel="LiDAR points in the box")
        axes[0].legend()
        out.append(("LiDAR points per box", png_base64(fig)))
    plt.close("all")
    return out


def render_html(summary: dict, figures: list[tuple[str, str]]) -> str:
    esc = html.escape
    warn = "".join(f"<li>{esc(w)}</li>" for w in summary["warnings"]) or "<li>none</li>"
    errs = Counter(e["kind"] for e in summary["label_errors"])
    body = [f"<h1>Dataset analysis</h1><p>{esc(summary['dataset'])}</p>",
            f"<p>{summary['frames']['train']} train / {summary['frames']['val']} val frames, {summary['objects']} objects, "
            f"{summary['ignore_regions']} ignore regions, {len(summary['empty_frames'])} frames without objects.</p>",
            f"<h2>Warnings</h2><ul>{warn}</ul>",
            f"<h2>Label errors</h2><p>{esc(json.dumps(dict(errs))) if errs else 'none found'}</p>"]
    body += [plot_section(title, png) for title, png in figures]
    # marks the page once every plot has decoded: a headless browser test reads data-plots-rendered
    script = ("<script>window.addEventListener('load',()=>{const p=[...document.querySelectorAll('img.plot')];"
              "document.body.dataset.plotsRendered=p.filter(i=>i.complete&&i.naturalWidth>0).length;});</script>")
    return page("Dataset analysis", body, script=script)


def render_markdown(summary: dict) -> str:
    lines = ["# Dataset analysis", "", "| class | train | val |", "| --- | --- | --- |"]
    lines += [f"| {c} | {summary['class_counts']['train'].get(c, 0)} | {summary['class_counts']['val'].get(c, 0)} |"
              for c in summary["categories"]]
    lines += ["", f"Empty frames: {len(summary['empty_frames'])}; label errors: {len(summary['label_errors'])}."]
    if summary.get("has_lidar"):
        lines += [f"3D boxes with no LiDAR point: {summary['boxes_without_lidar_points']}."]
    lines += ["",
              "Warnings:" if summary["warnings"] else "No warnings."] + [f"* {w}" for w in summary["warnings"]]
    return "\n".join(lines) + "\n"


def analyze(dataset_dir: str | Path, out: str | Path) -> dict:
    """Analyse convert's output ``dataset_dir`` (or screen's, an unlabeled collection: ``drive.py``); publishes
    report.html, report.md and summary.json at ``out``."""
    if (Path(dataset_dir) / "frames.json").is_file() and not (Path(dataset_dir) / "index.parquet").is_file():
        from admlops.components.analyze.drive import analyze_drive

        with atomic_dir(out) as tmp:
            return analyze_drive(dataset_dir, tmp)
    summary, rows = summarize(dataset_dir)
    palette = json.loads((Path(dataset_dir) / "summary.json").read_text())["palette"]
    figures = plots(summary, rows, palette)
    summary["plots"] = [t for t, _ in figures]
    with atomic_dir(out) as tmp:
        (tmp / "report.html").write_text(render_html(summary, figures))
        (tmp / "report.md").write_text(render_markdown(summary))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
