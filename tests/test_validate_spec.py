"""`admlops data validate` (every violation listed with file and line) and `admlops data spec`."""
import json
import shutil

from admlops.components.analyze.spec import render_spec
from admlops.components.analyze.validate import validate
from admlops.definition import load_definition
from admlops.pipelines.cli import main


def test_clean_synthetic_data_has_no_violations(kitti_root):
    report = validate("kitti", kitti_root, "kitti-3class")
    assert report["frames"] == 20 and report["objects"] > 50 and report["violations"] == []


def test_violations_are_all_listed(kitti_root, tmp_path, capsys):
    src = tmp_path / "k"
    shutil.copytree(kitti_root, src)
    labels = src / "training" / "label_2"
    a = labels / "000001.txt"
    lines = a.read_text().splitlines()
    lines.append("Car 0.00 0 0.10 100.00 150.00 102.00 155.00 1.50 1.60 3.90 1.00 1.65 60.00 0.10")  # 2x5 px
    a.write_text("\n".join(lines) + "\n")
    b = labels / "000002.txt"
    b.write_text(b.read_text() + "Car 0.00 0 0.10 1 2 3\n")  # 9 fields: unreadable frame
    c = labels / "000003.txt"
    c.write_text(c.read_text() + "Pedestrian 0.00 5 0.10 300.00 150.00 320.00 200.00 1.70 0.60 0.80 1.00 1.65 20.00 0.10\n")
    report = validate("kitti", src, "kitti-3class")
    rules = {(v["frame"], v["rule"], v["line"]) for v in report["violations"]}
    n = len(lines)
    assert ("000001", "min_box", n) in rules
    assert ("000002", "unreadable", len(b.read_text().splitlines())) in rules
    assert ("000003", "unreadable", len(c.read_text().splitlines())) in rules  # occlusion 5 is not KITTI
    assert report["frames"] == 18  # unreadable frames are reported, the others still checked
    assert report["by_rule"] == {"min_box": 1, "unreadable": 2}
    out = tmp_path / "report.json"
    assert main(["data", "validate", str(src), "--out", str(out)]) == 3
    printed = capsys.readouterr().out
    assert f"{a}:{n}: min_box: box 2.0x5.0 px is below the minimum 4x10 px" in printed
    assert json.loads(out.read_text())["by_rule"] == report["by_rule"]


def test_spec_document(tmp_path):
    defn = load_definition("kitti-3class")
    text = render_spec(defn)
    assert text.startswith("# Labeling specification: kitti-3class")
    assert "| 1 | Car | <span style=\"background:#dc2828\">" in text
    assert "* Minimum box: 4 x 10 px" in text and "| 2 | largely occluded |" in text
    assert "| DontCare | ignore |" in text
    assert main(["data", "spec", "--definition", "road-3class", "--out", str(tmp_path / "spec.md")]) == 0
    assert "| rider | cyclist |" in (tmp_path / "spec.md").read_text()
