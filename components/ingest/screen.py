"""Screening: which ingested frames are worth keeping, each rule with its threshold from the dataset definition
(``spec.py``), and the unlabeled dataset version of the frames kept.

Rules, in order (a frame is dropped by the first rule it fails, and counted there):

* ``exposure``: some camera's mean grey level is outside [min_mean, max_mean], or over ``max_clipped`` of its
  pixels are clipped (at 0-2 or 253-255);
* ``blur``: some camera's variance of the Laplacian is below ``min_relative_sharpness`` x that camera's median over
  the frames ingested together;
* ``standstill``: the ego's speed is below ``min_speed`` m/s and a frame was kept less than ``keep_every`` seconds
  before (while standing, one frame per ``keep_every`` s);
* ``duplicate``: the mean absolute grey difference of every camera's 64x48 thumbnail to the previous kept frame of
  the same recording is below ``max_difference`` (8-bit levels).

Any camera failing an image rule drops the frame: a frame is one LiDAR scan with every camera's image, and a
frame missing a usable view is not one (a six-camera rig thus drops more frames for glare than a one-camera rig).

``screen`` writes the version (atomically)::

    frames.json            the kept frames' records (ingest's, with the LiDAR and image files) and the recordings
    points/, images/       the kept frames' files (hard links to ingest's)
    annotations/pool.json  COCO with every kept camera image and no annotations: iterate's pool as it is
    summary.json           counts: ingested, kept, dropped by rule and by synchronisation; thresholds; recordings
    report/screening.html  the screening report (counts, each measurement's distribution against its threshold,
    report/screening.md    example thumbnails of each rule's drops)

and publishes it as a dataset version whose lineage names each recording's files and their sha256.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from admlops.components.ingest.spec import recording_spec
from admlops.definition import load_definition
from admlops.errors import InputError
from admlops.localfs import atomic_dir, link_or_copy

RULES = ("exposure", "blur", "standstill", "duplicate")
EXAMPLES = 4  # thumbnails per rule in the report
ROLES = {"images/": "image", "points/": "lidar", "annotations/": "label", "frames.json": "calib"}


def decide(frames: list[dict], thumbs: np.ndarray, rules: dict) -> list[str | None]:
    """Per frame, the rule that drops it, or None (kept). ``frames`` in time order per recording."""
    sharpness = relative_sharpness(frames)
    reasons: list[str | None] = []
    last_kept: dict[str, tuple[int, np.ndarray]] = {}  # recording -> (time, thumbnails) of its last kept frame
    for f, thumb, sharp in zip(frames, thumbs, sharpness):
        reason = None
        views = f["cameras"].values()
        ex, bl, st, du = (rules.get(r) for r in RULES)
        prev = last_kept.get(f["recording"])
        if ex and any(not ex["min_mean"] <= v["mean"] <= ex["max_mean"] or v["clipped"] > ex["max_clipped"]
                      for v in views):
            reason = "exposure"
        elif bl and sharp < bl["min_relative_sharpness"]:
            reason = "blur"
        elif st and f["speed"] < st["min_speed"] and prev is not None and \
                (f["stamp_ns"] - prev[0]) / 1e9 < st["keep_every"]:
            reason = "standstill"
        elif du and prev is not None and \
                np.abs(thumb.astype(np.float32) - prev[1].astype(np.float32)).mean() < du["max_difference"]:
            reason = "duplicate"
        if reason is None:
            last_kept[f["recording"]] = (f["stamp_ns"], thumb)
        reasons.append(reason)
    return reasons


def read_ingested(path: Path) -> tuple[dict, np.ndarray]:
    try:
        record = json.loads((path / "frames.json").read_text())
        thumbs = np.load(path / "thumbs.npy")
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not ingest's output (frames.json, thumbs.npy): {exc}") from None
    if len(thumbs) != len(record["frames"]):
        raise InputError(path / "thumbs.npy", f"{len(thumbs)} thumbnails for {len(record['frames'])} frames")
    return record, thumbs


def coco_pool(frames: list[dict], definition) -> dict:
    images = []
    for f in frames:
        for cam, v in f["cameras"].items():
            images.append({"id": len(images) + 1, "file_name": v["image"], "width": v["width"], "height": v["height"],
                           "frame": f["id"], "camera": cam, "stamp_ns": v["stamp_ns"]})
    return {"images": images, "annotations": [],
            "categories": [{"id": c.id, "name": c.name} for c in definition.categories]}


def screen(ingested: str | Path, definition: str, out: str | Path, store_uri: str = "", name: str | None = None) -> dict:
    """Screen ingest's output at ``ingested`` with ``definition``'s thresholds into ``out`` (layout in the module
    doc), published in ``store_uri`` (empty: the default store) as dataset version ``name`` (default:
    the first recording's name + ``-frames``). Returns the summary (with ``dataset_version`` when published)."""
    from admlops import catalog
    from admlops.objectstore import open_store

    ingested = Path(ingested)
    definition = load_definition(definition)
    spec = recording_spec(definition)
    record, thumbs = read_ingested(ingested)
    frames = record["frames"]
    reasons = decide(frames, thumbs, spec.rules)
    kept = [f for f, r in zip(frames, reasons) if r is None]
    by_rule = {r: sum(1 for x in reasons if x == r) for r in RULES if r in spec.rules}
    summary = {"definition": definition.name, "recordings": record["recordings"], "scans": record["scans"],
               "ingested": len(frames), "kept": len(kept), "dropped": {"sync": record["dropped"]["sync"],
               "pose": record["dropped"]["pose"], **by_rule}, "rules": spec.rules, "cameras": record["cameras"],
               "sync_tolerance_ms": record["sync_tolerance_ms"]}
    out = Path(out)
    with atomic_dir(out) as tmp:
        for sub in ("points", "images", "annotations", "report"):
            (tmp / sub).mkdir()
        for f in kept:
            link_or_copy(ingested / f["lidar"], tmp / f["lidar"])
            for v in f["cameras"].values():
                link_or_copy(ingested / v["image"], tmp / v["image"])
        (tmp / "annotations" / "pool.json").write_text(json.dumps(coco_pool(kept, definition)))
        (tmp / "frames.json").write_text(json.dumps({**{k: record[k] for k in ("recordings", "cameras")},
                                                     "frames": kept}, indent=1))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        write_report(tmp / "report", ingested, frames, reasons, summary)
        store = open_store(store_uri)
        lineage = {"recordings": [{k: r[k] for k in ("name", "file", "storage", "sha256")}
                                  for r in record["recordings"]], "definition": definition.name, "rules": spec.rules}
        version = catalog.push(store, "datasets", name or f"{record['recordings'][0]['name']}-frames", tmp,
                               roles=ROLES, extra={"lineage": lineage, "unlabeled": True})
        summary["dataset_version"] = version.record(store)  # not in the version's own summary.json: content-hashed
    return summary


def write_report(out: Path, ingested: Path, frames: list[dict], reasons: list, summary: dict) -> None:
    """screening.html (counts, distributions against thresholds, example thumbnails per rule) and screening.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from admlops.htmlpage import img, page, plot_section, png_base64

    rules = summary["rules"]
    rows = [("scans recorded", summary["scans"]),
            *((f"dropped: no {cam} image within {summary['sync_tolerance_ms']:g} ms", n)
              for cam, n in summary["dropped"]["sync"].items()),
            ("dropped: no ego pose (outside /tf)", summary["dropped"]["pose"]),
            *((f"dropped: {r} ({', '.join(f'{k} {v:g}' for k, v in rules[r].items())})", summary["dropped"][r])
              for r in RULES if r in rules),
            ("kept", summary["kept"])]
    md = ["# Screening", "", f"Definition `{summary['definition']}`; recordings: "
          + ", ".join(f"`{r['file']}` ({r['storage']}, {r['frames']} frames)" for r in summary["recordings"]), "",
          "| | frames |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    parts = [f"<p>Definition <code>{html.escape(summary['definition'])}</code>; recordings: "
             + ", ".join(html.escape(f"{r['file']} ({r['storage']})") for r in summary["recordings"]) + "</p>",
             "<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"]
    if frames:
        cams = list(frames[0]["cameras"])
        fig, axes = plt.subplots(1, 4, figsize=(16, 3))
        series = [("mean grey level", [min(f["cameras"][c]["mean"] for c in cams) for f in frames],
                   [rules["exposure"]["min_mean"], rules["exposure"]["max_mean"]] if "exposure" in rules else []),
                  ("sharpness / camera median", relative_sharpness(frames),
                   [rules["blur"]["min_relative_sharpness"]] if "blur" in rules else []),
                  ("ego speed m/s", [f["speed"] for f in frames],
                   [rules["standstill"]["min_speed"]] if "standstill" in rules else []),
                  ("camera offset to LiDAR ms", [v["offset_ms"] for f in frames for v in f["cameras"].values()],
                   [-summary["sync_tolerance_ms"], summary["sync_tolerance_ms"]])]
        for ax, (title, values, lines) in zip(axes, series):
            ax.hist(values, bins=30, color="#4477aa")
            for x in lines:
                ax.axvline(x, color="#cc3311", ls="--")
            ax.set_title(title)
        parts.append(plot_section("Measurements (dashed: thresholds)", png_base64(fig)))
        plt.close(fig)
    for rule in RULES:
        dropped = [f for f, r in zip(frames, reasons) if r == rule][:EXAMPLES]
        if not dropped:
            continue
        thumbs = []
        for f in dropped:
            v = next(iter(f["cameras"].values()))
            with Image.open(ingested / v["image"]) as im:
                im.thumbnail((240, 240))
                thumbs.append(img(png_base64(im.convert("RGB")), f["id"], cls="thumb") + f"<br>{html.escape(f['id'])}")
        parts.append(f"<h2>Dropped for {rule}: examples</h2><div>" + "".join(
            f"<span style='display:inline-block;margin:4px'>{t}</span>" for t in thumbs) + "</div>")
        md += ["", f"Dropped for {rule}, e.g.: " + ", ".join(f"`{f['id']}`" for f in dropped)]
    (out / "screening.html").write_text(page("Screening", parts))
    (out / "screening.md").write_text("\n".join(md) + "\n")


def relative_sharpness(frames: list[dict]) -> list[float]:
    """Per frame, the lowest over its cameras of the camera's variance of the Laplacian against that camera's
    median over ``frames``."""
    cams = list(frames[0]["cameras"]) if frames else []
    median = {c: float(np.median([f["cameras"][c]["sharpness"] for f in frames])) or 1.0 for c in cams}
    return [min(f["cameras"][c]["sharpness"] / median[c] for c in cams) for f in frames]
