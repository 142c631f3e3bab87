"""Label Studio (JSON): ``tasks.json`` (one task per frame: ``data.image``, ``data.frame`` and the model's boxes as
``predictions[].result[]`` of type ``rectanglelabels``, in percent of the image), the labeling config
``labeling_config.xml`` (``RectangleLabels`` for the categories and the ignore region; one per-region control
per required field: ``Number`` for truncation, ``Choices`` for the occlusion levels), and ``project.json``: the
project as Label Studio's API creates it (title, label_config, the labeling standard as expert_instruction).

The vendor returns Label Studio's JSON export (a list of tasks with ``annotations[].result[]``). Its objects are
parsed with their line numbers, so a problem names ``export.json:<line>``, the task index and the result id.
"""
from __future__ import annotations

import bisect
import html
import json
import json.decoder
import json.scanner
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

from admlops.components.analyze.spec import render_spec
from admlops.components.convert.records import Frame, Object
from admlops.components.iterate.formats import (
    LabelFormat, Read, Task, TaskFrame, Where, attribute_value, check_box, color_of, missing_frames, register, violation,
)
from admlops.definition import IGNORE
from admlops.errors import InputError

FROM, TO = "label", "image"  # the RectangleLabels' name and the Image's name in the labeling config
IMAGE_URL = "/data/local-files/?d=images/"  # Label Studio's local-files storage with the task folder as its root


def labeling_config(task: Task) -> str:
    """The labeling config (XML) whose names the tasks' results use."""
    std = task.definition.labeling
    view = ET.Element("View")
    ET.SubElement(view, "Header", value=f"{task.definition.name}: box every object; see the instructions")
    ET.SubElement(view, "Image", name=TO, value="$image", zoom="true")
    rect = ET.SubElement(view, "RectangleLabels", name=FROM, toName=TO)
    descriptions = {c.name: c.description for c in task.definition.categories}
    for name in task.labels:
        hint = descriptions.get(name) or ("an ignore region: an object too small, or of a class the task leaves out"
                                          if name == IGNORE else name)
        ET.SubElement(rect, "Label", value=name, background=color_of(task, name), hint=hint)
    region = ET.SubElement(view, "View", visibleWhen="region-selected")
    for attr in task.attributes:
        ET.SubElement(region, "Header", value=attr)
        if attr == "occluded" and std.occlusion_levels:
            choices = ET.SubElement(region, "Choices", name=attr, toName=TO, perRegion="true", required="true",
                                    choice="single-radio")
            for level, meaning in sorted(std.occlusion_levels.items()):
                ET.SubElement(choices, "Choice", value=str(level), hint=meaning)
        elif attr == "truncated":
            ET.SubElement(region, "Number", name=attr, toName=TO, perRegion="true", required="true", min="0",
                          max=f"{std.max_truncation:g}", step="0.01")
        else:
            ET.SubElement(region, "TextArea", name=attr, toName=TO, perRegion="true", required="true", maxSubmissions="1")
    ET.indent(view)
    return ET.tostring(view, encoding="unicode")


def _region(f: TaskFrame, i: int, bbox, label: str, **extra) -> dict:
    x1, y1, x2, y2 = bbox
    return {"id": f"r{i}", "type": "rectanglelabels", "from_name": FROM, "to_name": TO, "original_width": f.width,
            "original_height": f.height, "image_rotation": 0, **extra,
            "value": {"x": 100 * x1 / f.width, "y": 100 * y1 / f.height, "width": 100 * (x2 - x1) / f.width,
                      "height": 100 * (y2 - y1) / f.height, "rotation": 0, "rectanglelabels": [label]}}


def write(task: Task, out: Path, image_url: str = IMAGE_URL) -> list[str]:
    """``tasks.json``, ``labeling_config.xml``, ``project.json`` and ``spec.md`` into ``out``."""
    tasks = [{"data": {"image": f"{image_url}{f.file}", "frame": f.frame},
              "predictions": [{"model_version": task.model, "score": max((b.score for b in f.boxes), default=0.0),
                               "result": [_region(f, i, b.bbox, b.label, score=round(b.score, 5))
                                          for i, b in enumerate(f.boxes)]}]}
             for f in task.frames]
    config = labeling_config(task)
    spec = render_spec(task.definition)
    (out / "tasks.json").write_text(json.dumps(tasks, indent=2))
    (out / "labeling_config.xml").write_text(config + "\n")
    (out / "project.json").write_text(json.dumps({"title": task.name, "label_config": config, "show_instruction": True,
                                                  "expert_instruction": f"<pre>{html.escape(spec)}</pre>"}, indent=2))
    (out / "spec.md").write_text(spec)
    return ["tasks.json", "labeling_config.xml", "project.json", "spec.md"]


class Located(dict):
    """A JSON object that remembers the line it starts on."""

    line: int | None = None


def load_json(path: Path):
    """``path`` parsed as JSON, every object a ``Located`` with its line; malformed JSON is an InputError at its line."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the returned labels: {exc}") from None
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    decoder = json.JSONDecoder()

    def parse_object(s_and_end, *args):
        obj, end = json.decoder.JSONObject(s_and_end, *args)
        located = Located(obj)
        located.line = bisect.bisect_right(starts, s_and_end[1] - 1)
        return located, end

    decoder.parse_object = parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # the pure-Python scanner calls parse_object
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None


def _line(obj) -> int | None:
    return getattr(obj, "line", None)


def _annotation(task_json: dict):
    """The annotation to take: the one marked ground truth, else the last completed (not cancelled) one."""
    done = [a for a in task_json.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    return next((a for a in done if a.get("ground_truth")), done[-1] if done else None)


def read(path: Path, task: Task, images: Path) -> Read:
    """The frames of a Label Studio JSON export ``path``, and every structural problem (task index, result id, line)."""
    data = load_json(path)
    if not isinstance(data, list):
        raise InputError(path, "expected Label Studio's JSON export: a list of tasks", _line(data) or 1)
    files, by_frame = task.by_file(), {f.frame: f for f in task.frames}
    frames, problems, seen, where = [], [], set(), {}
    for t, item in enumerate(data):
        at = {"task": t}
        d = item.get("data") if isinstance(item, dict) else None
        if not isinstance(d, dict):
            problems.append(violation(path, _line(item), None, "malformed", f"task {t}: no data object", **at))
            continue
        tf = by_frame.get(d.get("frame")) or files.get(PurePosixPath(str(d.get("image", ""))).name.split("=")[-1])
        if tf is None:
            problems.append(violation(path, _line(item), None, "unknown_frame", f"task {t}: frame {d.get('frame')!r} "
                                      f"(image {d.get('image')!r}) is not a frame of the task", **at))
            continue
        if tf.frame in seen:
            problems.append(violation(path, _line(item), tf.frame, "duplicate_frame", f"task {t}: frame {tf.frame} appears twice",
                                      **at))
            continue
        seen.add(tf.frame)
        ann = _annotation(item)
        if ann is None:
            problems.append(violation(path, _line(item), tf.frame, "unlabelled", f"task {t}: no completed annotation", **at))
            continue
        objects, found = _objects(path, t, ann.get("result") or [], tf, task, where)
        problems += found
        frames.append(Frame(tf.frame, images / tf.file, tf.width, tf.height, tuple(objects), path))
    return frames, problems + missing_frames(path, 1, task, seen), where


def _objects(path: Path, t: int, results: list, tf: TaskFrame, task: Task, where: Where) -> tuple[list[Object], list[dict]]:
    """Regions (``rectanglelabels``) with the per-region attributes (results of the same id) as Objects; ``where``
    gets each one's task index and result id."""
    boxes, attrs, problems = {}, {}, []
    fields = set(task.attributes)

    def bad(r, rule, message, label=None):
        rid = r.get("id") if isinstance(r, dict) else None
        problems.append(violation(path, _line(r), tf.frame, rule, f"task {t}, result {rid}: {message}", label,
                                  task=t, result=rid))

    for r in results:
        v = r.get("value") if isinstance(r, dict) else None
        if not isinstance(v, dict):
            bad(r, "malformed", "no value object")
        elif r.get("type") == "rectanglelabels" and r.get("from_name") == FROM:
            labels = v.get("rectanglelabels") or []
            label = labels[0] if len(labels) == 1 else None
            try:
                x, y, w, h = (float(v[k]) for k in ("x", "y", "width", "height"))
            except (KeyError, TypeError, ValueError) as exc:
                bad(r, "malformed", f"x, y, width, height must be numbers ({exc})", label)
                continue
            if len(labels) != 1:
                bad(r, "malformed", f"a region needs exactly one label, got {labels}")
            elif float(v.get("rotation") or 0):
                bad(r, "unsupported_shape", f"rotated box ({v['rotation']} degrees): boxes must be axis-aligned", label)
            elif (r.get("original_width"), r.get("original_height")) not in ((None, None), (tf.width, tf.height)):
                bad(r, "image_size", f"labelled on a {r.get('original_width')}x{r.get('original_height')} image, the task's "
                    f"image is {tf.width}x{tf.height}", label)
            else:
                bbox = (x * tf.width / 100, y * tf.height / 100, (x + w) * tf.width / 100, (y + h) * tf.height / 100)
                problems += [dict(p, task=t, result=r.get("id")) for p in check_box(path, _line(r), tf, label, bbox)]
                boxes[r.get("id")] = (label, bbox, _line(r))
                where[(tf.frame, _line(r))] = {"task": t, "result": r.get("id")}
        elif r.get("from_name") in fields and r.get("type") in ("choices", "number", "textarea"):
            key = {"choices": "choices", "number": "number", "textarea": "text"}[r["type"]]
            raw = v.get(key)
            raw = raw[0] if isinstance(raw, list) and len(raw) == 1 else raw
            try:
                attrs.setdefault(r.get("id"), {})[r["from_name"]] = attribute_value(r["from_name"], raw)
            except (TypeError, ValueError) as exc:
                bad(r, "malformed", f"{r['from_name']} {raw!r}: {exc}")
        else:
            bad(r, "unknown_field", f"a {r.get('type')!r} result from {r.get('from_name')!r}: not a control of the "
                "labeling config")
    for rid in attrs.keys() - boxes.keys():
        problems.append(violation(path, None, tf.frame, "malformed", f"task {t}: attributes of region {rid!r}, which has no box",
                                  task=t, result=rid))
    objects = [Object(label or "", bbox, attrs.get(rid, {}), line=line) for rid, (label, bbox, line) in boxes.items()]
    return objects, problems


register(LabelFormat("labelstudio", write, read, "Label Studio JSON export (a list of tasks with annotations)"))
