"""Analysis of an unlabeled collection (screen's output, read through its frames.json): what the kept frames cover
before anyone labels them — the route driven (ego positions in the world frame, per recording), distance and time,
the ego's speed, the light each camera saw (its mean grey level) and the LiDAR's points per scan — with warnings
where a collection is one-sided (mostly standing, mostly dark, a sparse LiDAR, one recording dominating).

Writes the same three files as the labeled analysis: ``report.html`` (plots embedded), ``report.md`` and
``summary.json``.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from admlops.htmlpage import page, plot_section, png_base64

SLOW = 1.0  # m/s: the ego is as good as standing
DARK, BRIGHT = 50.0, 205.0  # a camera's mean grey level (8-bit) below / above: a dark (night, tunnel) / bright image
SPARSE_POINTS = 1000  # a scan with fewer points than this is a sensor or range problem, not a scene
ONE_SIDED = 0.8  # a warning when this share of the frames is slow, dark, or from one recording


def route(frames: list[dict], recording: str) -> tuple[list[dict], np.ndarray]:
    """A recording's frames and the ego's positions at them (N x 3, the world frame)."""
    own = [f for f in frames if f["recording"] == recording]
    return own, np.array([np.asarray(f["ego_pose"])[:3, 3] for f in own]).reshape(-1, 3)


def summarize_drive(dataset_dir: str | Path, record: dict) -> dict:
    """The summary of screen's output ``dataset_dir`` from its frames.json ``record``."""
    frames = record["frames"]
    cams = list(record["cameras"])  # the definition's camera names
    recordings = []
    for rec in record["recordings"]:
        own, xyz = route(frames, rec["name"])
        stamps = [f["stamp_ns"] for f in own]
        recordings.append({"name": rec["name"], "frames": len(own),
                           "duration_s": (max(stamps) - min(stamps)) / 1e9 if own else 0.0,
                           "distance_m": float(np.linalg.norm(np.diff(xyz, axis=0), axis=1).sum())})
    speed = np.array([f["speed"] for f in frames], dtype=float)
    points = np.array([f["points"] for f in frames], dtype=float)
    light = {c: np.array([f["cameras"][c]["mean"] for f in frames], dtype=float) for c in cams}
    n = max(len(frames), 1)
    summary = {"dataset": str(dataset_dir), "kind": "unlabeled collection", "frames": len(frames),
               "recordings": recordings, "cameras": cams,
               "distance_m": sum(r["distance_m"] for r in recordings),
               "duration_s": sum(r["duration_s"] for r in recordings),
               "speed_m_s": _stats(speed), "slow_frames": int((speed < SLOW).sum()),
               "points_per_scan": _stats(points), "sparse_scans": int((points < SPARSE_POINTS).sum()),
               "light": {c: {**_stats(v), "dark": int((v < DARK).sum()), "bright": int((v > BRIGHT).sum())}
                         for c, v in light.items()}}
    warnings = []
    if summary["slow_frames"] / n >= ONE_SIDED:
        warnings.append(f"{summary['slow_frames']} of {len(frames)} frames with the ego below {SLOW:g} m/s: "
                        "a collection of standing scenes")
    for c, s in summary["light"].items():
        for kind in ("dark", "bright"):
            if s[kind] / n >= ONE_SIDED:
                warnings.append(f"camera {c}: {s[kind]} of {len(frames)} frames {kind} (mean grey level "
                                f"{'below' if kind == 'dark' else 'above'} {DARK if kind == 'dark' else BRIGHT:g})")
    if summary["sparse_scans"]:
        warnings.append(f"{summary['sparse_scans']} scans with fewer than {SPARSE_POINTS} points")
    if len(recordings) > 1 and max(r["frames"] for r in recordings) / n >= ONE_SIDED:
        big = max(recordings, key=lambda r: r["frames"])
        warnings.append(f"recording {big['name']} holds {big['frames']} of {len(frames)} frames")
    summary["warnings"] = warnings
    return summary


def _stats(values: np.ndarray) -> dict:
    if not len(values):
        return {"min": None, "median": None, "max": None}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def plots(frames: list[dict], summary: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for rec in summary["recordings"]:
        _, xyz = route(frames, rec["name"])
        ax.plot(xyz[:, 0], xyz[:, 1], ".-", ms=3, label=f"{rec['name']} ({rec['distance_m']:.0f} m)")
    ax.set(xlabel="x (m, world frame)", ylabel="y (m)", aspect="equal")
    ax.legend(fontsize="small")
    out.append(("Route of the kept frames", png_base64(fig)))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3))
    axes[0].hist([f["speed"] for f in frames], bins=30, color="#4477aa")
    axes[0].axvline(SLOW, color="#cc3311", ls="--")
    axes[0].set(xlabel="ego speed (m/s)", ylabel="frames")
    for c in summary["cameras"]:
        axes[1].hist([f["cameras"][c]["mean"] for f in frames], bins=30, range=(0, 255), histtype="step", label=c)
    for x in (DARK, BRIGHT):
        axes[1].axvline(x, color="#cc3311", ls="--")
    axes[1].set(xlabel="camera mean grey level", ylabel="frames")
    axes[1].legend(fontsize="small")
    axes[2].hist([f["points"] for f in frames], bins=30, color="#228833")
    axes[2].set(xlabel="LiDAR points per scan", ylabel="frames")
    out.append(("Speed, light and LiDAR density (dashed: the warning thresholds)", png_base64(fig)))
    plt.close("all")
    return out


def render_markdown(summary: dict) -> str:
    lines = ["# Collection analysis", "", f"{summary['frames']} frames, {summary['distance_m']:.0f} m in "
             f"{summary['duration_s']:.0f} s, cameras {', '.join(summary['cameras'])}.", "",
             "| recording | frames | duration (s) | distance (m) |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['name']} | {r['frames']} | {r['duration_s']:.1f} | {r['distance_m']:.1f} |"
              for r in summary["recordings"]]
    lines += ["", "Warnings:" if summary["warnings"] else "No warnings."] + [f"* {w}" for w in summary["warnings"]]
    return "\n".join(lines) + "\n"


def analyze_drive(dataset_dir: str | Path, tmp: Path) -> dict:
    """Write the collection's report.html, report.md and summary.json into ``tmp`` (the caller publishes it)."""
    record = json.loads((Path(dataset_dir) / "frames.json").read_text())
    summary = summarize_drive(dataset_dir, record)
    figures = plots(record["frames"], summary)
    summary["plots"] = [t for t, _ in figures]
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in summary["warnings"]) or "<li>none</li>"
    body = [f"<h1>Collection analysis</h1><p>{html.escape(summary['dataset'])}</p>",
            "<pre>" + html.escape(render_markdown(summary)) + "</pre>", f"<h2>Warnings</h2><ul>{warn}</ul>"]
    body += [plot_section(title, png) for title, png in figures]
    (tmp / "report.html").write_text(page("Collection analysis", body))
    (tmp / "report.md").write_text(render_markdown(summary))
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
