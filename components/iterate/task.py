"""A labeling task of the selected frames, out to a labeling tool and back.

``export_task`` writes a task folder::

    task.json         format, name, definition, the frames (id, image file, size), the selection and the model
    images/<file>     the selected frames' images (hard links or copies)
    ...               the format's own files (``formats.FORMATS``): CVAT's annotations.xml, Label Studio's
                      tasks.json + labeling_config.xml + project.json, and spec.md (the labeling standard)

``import_labels`` reads what the vendor returned against that task and the definition's labeling standard (the
rules of ``admlops data validate``) and writes ``labels.json`` (the frames with their objects), ``images/``,
``task.json`` and the returned file as delivered: everything ``merge`` needs. Any problem (malformed file,
unknown or missing frame, unknown label, box outside the image, a missing required field, ...) is listed with
its file and line, and nothing is written (exit 3).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

from admlops.components.analyze.validate import check_frame
from admlops.components.iterate.formats import PreBox, Task, TaskFrame, get_format
from admlops.components.iterate.predictions import read_predictions
from admlops.components.iterate.select import read_selection
from admlops.definition import IGNORE, load_definition
from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir, link_or_copy

PRE_SCORE = 0.3  # pre-annotate the model's boxes scoring at least this


class LabelsRejected(InputError):
    """Returned labels with problems: ``violations`` lists every one (file, line, frame, rule, message)."""

    def __init__(self, path, violations: list[dict]):
        violations = sorted(violations, key=lambda v: (v["file"], v["line"] if v["line"] is not None else 0))
        lines = "\n".join(f"  {v['file']}:{v['line'] if v['line'] is not None else '-'}: {v['rule']}: {v['message']}"
                          for v in violations)
        super().__init__(path, f"{len(violations)} problem(s) in the returned labels, nothing imported:\n{lines}",
                         violations[0]["line"])
        self.violations = violations

    def __reduce__(self):  # keeps it picklable with its violations
        return type(self), (self.path, self.violations)


def export_task(selection: str | Path, predictions: str | Path, out: str | Path, fmt: str, definition: str | None = None,
                min_score: float = PRE_SCORE, name: str | None = None) -> dict:
    """Write a ``fmt`` (a key of ``FORMATS``) labeling task of select's chosen frames, with infer's boxes scoring
    ``min_score`` or more as pre-annotations, under the labeling standard of ``definition`` (default: the one the
    dataset was converted with); publishes ``out``; returns task.json's record."""
    label_format = get_format(fmt)
    sel = read_selection(selection)
    preds = {p.frame: p for p in read_predictions(predictions)[0]}
    ref = definition or sel.get("definition")
    if not ref:
        raise UsageError("no dataset definition: pass one (the selection does not name the dataset's)")
    defn = load_definition(ref)
    classes = sel.get("classes") or []
    if classes != [c.name for c in defn.categories]:
        raise UsageError(f"definition {defn.name!r} has categories {[c.name for c in defn.categories]}, the model "
                         f"predicts {classes}: the labels would not match")
    model = sel.get("model") or {}
    model_name = f"{model['name']}@{model['version']}" if model.get("name") else str(model.get("path", ""))
    name = name or f"{defn.name}-iterate-{len(sel['frames'])}"
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        frames = []
        for chosen in sel["frames"]:
            p = preds.get(chosen["frame"])
            if p is None:
                raise InputError(Path(predictions) / "predictions.jsonl", f"selected frame {chosen['frame']!r} has no prediction")
            image = Path(p.image)
            if not image.is_file():
                raise InputError(image, f"image of selected frame {p.frame} not found")
            file = f"{p.frame}{image.suffix}"
            link_or_copy(image, tmp / "images" / file)
            d = p.dets.confident(min_score)
            boxes = tuple(PreBox(classes[k], (max(0.0, b[0]), max(0.0, b[1]), min(p.width, b[2]), min(p.height, b[3])), float(s))
                          for b, s, k in zip(d.boxes.tolist(), d.scores, d.labels, strict=True))
            frames.append(TaskFrame(p.frame, file, p.width, p.height, boxes))
        task = Task(name, defn, tuple(frames), model_name)
        files = label_format.write(task, tmp)
        record = {
            "format": fmt, "name": name, "definition": str(ref), "definition_name": defn.name, "labels": task.labels,
            "attributes": task.attributes, "returned": label_format.returned, "files": files, "model": model,
            "pool": sel.get("pool"), "dataset": sel.get("dataset"), "pre_annotation_min_score": min_score,
            "frames": [{"frame": f.frame, "file": f.file, "width": f.width, "height": f.height,
                        "source_image": preds[f.frame].image, "pre_annotations": len(f.boxes)} for f in frames],
            "selection": {k: sel.get(k) for k in ("budget", "budget_boxes", "targets", "pool_frames", "signals", "weights",
                                                  "diversity", "method")}
            | {"frames": [{k: c[k] for k in ("rank", "frame", "combined", "drivers", "signals", "reason")}
                          for c in sel["frames"]]},
        }
        (tmp / "task.json").write_text(json.dumps(record, indent=2))
    return record


def read_task(task_dir: str | Path) -> tuple[dict, Task]:
    path = Path(task_dir) / "task.json"
    if not path.is_file():
        raise InputError(path, "not a labeling task folder (export's output): task.json is missing")
    record = json.loads(path.read_text())
    frames = tuple(TaskFrame(f["frame"], f["file"], f["width"], f["height"]) for f in record["frames"])
    model = record.get("model") or {}
    return record, Task(record["name"], load_definition(record["definition"]), frames, model.get("name", ""))


def import_labels(task_dir: str | Path, returned: str | Path, out: str | Path) -> dict:
    """Import the vendor's labels ``returned`` for the task at ``task_dir``, checked against its labeling standard;
    publishes ``out`` (labels.json, images/, task.json). Raises ``LabelsRejected`` (exit 3) listing every problem."""
    record, task = read_task(task_dir)
    returned = Path(returned)
    if not returned.is_file():
        raise InputError(returned, f"returned labels not found (expected {record['returned']})")
    frames, problems, where = get_format(record["format"]).read(returned, task, Path(task_dir) / "images")
    mapping = {c.name: c.name for c in task.definition.categories} | {IGNORE: IGNORE}
    for frame in frames:
        for v in check_frame(frame, task.definition, mapping):
            extra = where.get((v["frame"], v["line"]), {})
            prefix = "".join(f"{k} {val}, " for k, val in extra.items())
            problems.append(v | extra | {"message": f"{prefix[:-2]}: {v['message']}" if extra else v["message"]})
    if problems:
        raise LabelsRejected(returned, problems)
    labels = [{"frame": f.id, "file": f.image.name, "width": f.width, "height": f.height,
               "objects": [{"label": o.label, "bbox": list(o.bbox), "attributes": o.attributes, "line": o.line}
                           for o in f.objects]}
              for f in frames]
    counts = Counter(o["label"] for f in labels for o in f["objects"])
    delivered = {"path": str(returned.resolve()), "file": f"returned{returned.suffix}",
                 "sha256": hashlib.sha256(returned.read_bytes()).hexdigest()}
    summary = {"frames": len(labels), "objects": sum(counts.values()), "by_label": dict(counts), "format": record["format"],
               "task": record["name"], "returned": delivered}
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        for f in frames:
            link_or_copy(f.image, tmp / "images" / f.image.name)
        shutil.copyfile(Path(task_dir) / "task.json", tmp / "task.json")
        shutil.copyfile(returned, tmp / f"returned{returned.suffix}")  # what the vendor delivered, as delivered
        (tmp / "labels.json").write_text(json.dumps({"frames": labels}, indent=2))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
