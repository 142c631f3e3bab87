"""The corner-case report of a selection: which frames were chosen and why.

Writes ``report.html`` (self-contained: every image an inline base64 PNG, as the analysis report does):
thumbnails of the chosen frames with the model's boxes drawn, the distribution of every signal over the pool
with the chosen frames marked, how many chosen frames each signal (and the targets) drove, and per class the
expected boxes chosen against what a random pick of the same budget is expected to hold (select.py);
``report.md`` (the same as tables) and ``summary.json``.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from admlops.htmlpage import png_base64
from admlops.components.iterate.predictions import read_predictions
from admlops.components.iterate.score import read_scores
from admlops.components.iterate.select import read_selection
from admlops.definition import load_definition
from admlops.localfs import atomic_dir

THUMB_WIDTH = 480
MAX_THUMBS = 60
BOX_SCORE = 0.3  # draw the boxes scoring at least this
PALETTE = [(220, 40, 40), (40, 70, 210), (40, 175, 60), (230, 160, 20), (150, 60, 190), (20, 170, 170)]


def thumbnail(image: str | Path, dets, classes: list[str], colors=PALETTE, min_score: float = BOX_SCORE) -> str:
    """The image scaled to ``THUMB_WIDTH`` with the boxes scoring ``min_score`` or more (in the class's colour),
    as a base64 PNG."""
    with Image.open(image) as im:
        im = im.convert("RGB")
    scale = THUMB_WIDTH / im.width
    im = im.resize((THUMB_WIDTH, max(1, round(im.height * scale))))
    draw = ImageDraw.Draw(im)
    d = dets.confident(min_score)
    for box, s, k in zip(d.boxes * scale, d.scores, d.labels, strict=True):
        color = tuple(colors[int(k) % len(colors)])
        draw.rectangle(box.tolist(), outline=color, width=2)
        draw.text((box[0] + 2, max(0, box[1] - 11)), f"{classes[k]} {s:.2f}", fill=color)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def figures(records: list[dict], selection: dict) -> list[tuple[str, str]]:
    """(title, base64 PNG): each signal's distribution over the pool and the chosen frames; chosen per signal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = selection["signals"]
    chosen = {c["frame"] for c in selection["frames"]}
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False)
    for ax, n in zip(axes[0], names, strict=True):
        pool = [r["signals"][n]["score"] for r in records]
        picked = [r["signals"][n]["score"] for r in records if r["frame"] in chosen]
        ax.hist(pool, bins=20, range=(0, 1), color="0.7", label="pool")
        ax.hist(picked, bins=20, range=(0, 1), color="tab:red", label="chosen")
        ax.set(title=n, xlabel="score")
    axes[0][0].set_ylabel("frames")
    axes[0][0].legend()
    out = [("Signal distributions: pool and chosen frames", png_base64(fig))]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    counts = selection["chosen_by_signal"]
    ax.bar(list(counts), list(counts.values()), color="tab:red")
    ax.set(ylabel="chosen frames", title=f"Frames each signal drove ({len(chosen)} chosen of {selection['pool_frames']})")
    out.append(("Chosen frames per signal", png_base64(fig)))
    plt.close("all")
    return out


def budget_text(selection: dict) -> str:
    """The budget and targets in words: ``12 frames, 60 boxes; targets Cyclist (share 1)``."""
    parts = [f"{selection[k]} {unit}" for k, unit in (("budget", "frames"), ("budget_boxes", "boxes")) if selection.get(k)]
    text = ", ".join(parts) or str(selection.get("budget"))
    targets = selection.get("targets") or {}
    if targets:
        text += "; targets " + ", ".join(f"{c} (share {s:g})" for c, s in targets.items())
    return text


def driver_rows(selection: dict) -> list[tuple[str, str, int]]:
    """(driver, weight, chosen frames it drove): every signal, then the targets when there are any."""
    rows = [(n, f"{selection['weights'][n]:g}", selection["chosen_by_signal"][n]) for n in selection["signals"]]
    if "target" in selection["chosen_by_signal"]:
        rows.append(("target", "first", selection["chosen_by_signal"]["target"]))
    return rows


def class_rows(selection: dict) -> list[tuple[str, float, float, str]]:
    """(class, expected boxes chosen, expected of a random pick of the same budget, ratio) per class."""
    return [(c, v["chosen"], v["random"], "-" if v["ratio"] is None else f"{v['ratio']:.2f}x")
            for c, v in (selection.get("by_class") or {}).items()]


def render_html(selection: dict, figs: list[tuple[str, str]], thumbs: dict[str, str]) -> str:
    esc = html.escape
    boxes = selection.get("boxes") or {}
    body = [f"<h1>Corner cases: {len(selection['frames'])} frames to label</h1>",
            f"<p>Pool: {esc(str((selection.get('pool') or {}).get('path', '')))} ({selection['pool_frames']} frames); "
            f"budget {esc(budget_text(selection))}; method: {esc(selection['method'])} (diversity "
            f"{selection['diversity']}).</p>",
            "<table><tr><th>driver</th><th>weight</th><th>chosen frames it drove</th></tr>"]
    body += [f"<tr><td>{esc(n)}</td><td>{w}</td><td>{k}</td></tr>" for n, w, k in driver_rows(selection)]
    body.append("</table>")
    if selection.get("by_class"):
        body.append(f"<h2>Boxes per class: chosen vs a random pick</h2><p>{boxes.get('chosen')} predicted boxes chosen "
                    f"of the pool's {boxes.get('pool')}, each split among the classes by "
                    f"{esc(selection.get('evidence') or 'its normalised class scores')}; a "
                    "random pick of the same budget: the pool's boxes of the class x the chosen fraction of its frames (a "
                    "frame budget) or of its boxes (a box budget).</p><table><tr><th>class</th><th>chosen (expected boxes)"
                    "</th><th>random pick</th><th>ratio</th></tr>")
        body += [f"<tr><td>{esc(c)}</td><td>{n:.1f}</td><td>{r:.1f}</td><td>{q}</td></tr>"
                 for c, n, r, q in class_rows(selection)]
        body.append("</table>")
    for title, png in figs:
        body.append(f"<h2>{esc(title)}</h2><img class='plot' alt='{esc(title)}' src='data:image/png;base64,{png}'>")
    body.append("<h2>Chosen frames</h2>")
    for c in selection["frames"]:
        img = (f"<img class='thumb' alt='{esc(c['frame'])}' src='data:image/png;base64,{thumbs[c['frame']]}'>"
               if c["frame"] in thumbs else "")
        rows = "".join(f"<li><b>{esc(n)}</b> {s['score']:.2f}: {esc(s['reason'])}</li>" for n, s in c["signals"].items())
        body.append(f"<div class='frame'><h3>#{c['rank']} {esc(c['frame'])}: combined {c['combined']:.2f}, driven by "
                    f"{esc(', '.join(c['drivers']))}</h3>{img}<ul>{rows}</ul><p>{esc(c['reason'])}</p></div>")
    script = ("<script>window.addEventListener('load',()=>{const p=[...document.querySelectorAll('img')];"
              "document.body.dataset.imagesRendered=p.filter(i=>i.complete&&i.naturalWidth>0).length;});</script>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Corner cases</title><style>body{{font-family:sans-serif;"
            f"max-width:1100px;margin:auto}} img{{max-width:100%}} td,th{{padding:2px 8px;text-align:left}}"
            f" .frame{{border-top:1px solid #ccc;margin-top:1em}}</style>{script}</head><body>{''.join(body)}</body></html>")


def render_markdown(selection: dict) -> str:
    lines = [f"# Corner cases: {len(selection['frames'])} of {selection['pool_frames']} pool frames", "",
             f"Budget: {budget_text(selection)}.", "",
             "| driver | weight | chosen frames it drove |", "| --- | --- | --- |"]
    lines += [f"| {n} | {w} | {k} |" for n, w, k in driver_rows(selection)]
    if selection.get("by_class"):
        lines += ["", f"Each predicted box split among the classes by {selection.get('evidence') or 'its normalised class scores'}.",
                  "", "| class | expected boxes chosen | a random pick of the same budget | ratio |", "| --- | --- | --- | --- |"]
        lines += [f"| {c} | {n:.1f} | {r:.1f} | {q} |" for c, n, r, q in class_rows(selection)]
    lines += ["", "| rank | frame | combined | drivers | reason |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {c['rank']} | {c['frame']} | {c['combined']:.2f} | {', '.join(c['drivers'])} | "
              f"{c['reason'].replace('|', '/')} |" for c in selection["frames"]]
    return "\n".join(lines) + "\n"


def report(predictions: str | Path, scores: str | Path, selection: str | Path, out: str | Path) -> dict:
    """Publish report.html, report.md and summary.json of select's ``selection`` at ``out``; returns the summary."""
    preds, pred_summary = read_predictions(predictions)
    records, _ = read_scores(scores)
    sel = read_selection(selection)
    by_frame = {p.frame: p for p in preds}
    classes = pred_summary["classes"]
    colors = [c.color for c in load_definition(sel["definition"]).categories] if sel.get("definition") else PALETTE
    thumbs = {c["frame"]: thumbnail(by_frame[c["frame"]].image, by_frame[c["frame"]].dets, classes, colors)
              for c in sel["frames"][:MAX_THUMBS]}
    figs = figures(records, sel)
    summary = {"chosen": len(sel["frames"]), "pool_frames": sel["pool_frames"], "chosen_by_signal": sel["chosen_by_signal"],
               "targets": sel.get("targets") or {}, "boxes": sel.get("boxes"), "by_class": sel.get("by_class"),
               "signal_means": {n: float(np.mean([r["signals"][n]["score"] for r in records])) for n in sel["signals"]},
               "thumbnails": len(thumbs), "plots": [t for t, _ in figs]}
    with atomic_dir(out) as tmp:
        (tmp / "report.html").write_text(render_html(sel, figs, thumbs))
        (tmp / "report.md").write_text(render_markdown(sel))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
