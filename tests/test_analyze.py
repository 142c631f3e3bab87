"""The dataset analysis report: its numbers, its label-error checks, and its plots rendering in Chromium."""
import json
import shutil
import subprocess

import pytest

from admlops.components.analyze.report import analyze, label_errors

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(coco_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "report"
    return out, analyze(coco_dir, out)


def test_summary_matches_dataset(coco_dir, report):
    out, summary = report
    conv = json.loads((coco_dir / "summary.json").read_text())
    for split in ("train", "val"):
        for cat in conv["categories"]:
            assert summary["class_counts"][split].get(cat, 0) == conv["objects"][split][cat]
    assert summary["frames"] == conv["frames"] and summary["has_3d"]
    assert summary["plots"] == ["Objects per class and split", "Box size and aspect ratio",
                                "Where boxes are in the image (centre heatmap)", "Truncation and occlusion", "Object distance",
                                "LiDAR points per box"]
    assert json.loads((out / "summary.json").read_text())["objects"] == summary["objects"]
    assert (out / "report.md").read_text().startswith("# Dataset analysis\n\n| class | train | val |")


def test_label_errors_found():
    base = {"frame": "1", "category": "Car", "source_label": "Car", "ignore": False, "image_width": 100, "image_height": 50}
    rows = [
        dict(base, x1=10, y1=10, x2=30, y2=30, width=20, height=20),
        dict(base, x1=10, y1=10, x2=30, y2=30.2, width=20, height=20.2),  # duplicate
        dict(base, x1=50, y1=5, x2=50.5, y2=20, width=0.5, height=15),  # degenerate
        dict(base, x1=90, y1=5, x2=120, y2=20, width=30, height=15),  # outside
    ]
    assert sorted(e["kind"] for e in label_errors(rows)) == ["degenerate", "duplicate", "outside_image"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_plots_render_in_headless_chromium(report, tmp_path):
    out, summary = report
    res = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
         (out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert f'data-plots-rendered="{len(summary["plots"])}"' in res.stdout
