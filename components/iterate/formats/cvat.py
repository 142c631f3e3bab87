"""CVAT for images 1.1 (XML): ``annotations.xml`` with the task's labels and their attributes in ``<meta>``, one
``<image>`` per frame, the model's boxes as ``<box ... source="auto">``; the vendor returns the same format
(CVAT's "Export task dataset" -> "CVAT for images 1.1").

The labeling standard becomes label attributes: each required field (``truncated``: a number in
[0, max_truncation]; ``occluded``: a select of the occlusion levels) on every category; the ignore label has
none. The standard's other rules (minimum box) go into ``spec.md`` beside the XML, CVAT's task guide.

Returned XML is parsed with expat so every element keeps its line: a problem names ``annotations.xml:<line>``.
"""
from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from xml.parsers import expat

from admlops.components.analyze.spec import render_spec
from admlops.components.convert.records import Frame, Object
from admlops.components.iterate.formats import (
    LabelFormat, Read, Task, attribute_value, check_box, color_of, missing_frames, register, violation,
)
from admlops.definition import IGNORE
from admlops.errors import InputError

FILE = "annotations.xml"
SHAPES = ("box", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton", "tag")


def _sub(parent: ET.Element, tag: str, text=None, **attrs) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def _attribute_spec(parent: ET.Element, task: Task, name: str) -> None:
    std = task.definition.labeling
    a = _sub(parent, "attribute")
    _sub(a, "name", name)
    _sub(a, "mutable", "False")
    if name == "occluded" and std.occlusion_levels:
        levels = sorted(std.occlusion_levels)
        _sub(a, "input_type", "select")
        _sub(a, "default_value", levels[0])
        _sub(a, "values", "\n".join(str(v) for v in levels))
    elif name == "truncated":
        _sub(a, "input_type", "number")
        _sub(a, "default_value", 0)
        _sub(a, "values", f"0\n{std.max_truncation:g}\n0.01")  # CVAT's number attribute: min, max, step
    else:
        _sub(a, "input_type", "text")
        _sub(a, "default_value", "")
        _sub(a, "values", "")


def write(task: Task, out: Path) -> list[str]:
    """``annotations.xml`` (CVAT for images 1.1) and ``spec.md`` into ``out``."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    root = ET.Element("annotations")
    _sub(root, "version", "1.1")
    meta = _sub(root, "meta")
    t = _sub(meta, "task")
    for tag, text in (("id", 0), ("name", task.name), ("size", len(task.frames)), ("mode", "annotation"), ("overlap", 0),
                      ("bugtracker", ""), ("created", now), ("updated", now), ("subset", "default"), ("start_frame", 0),
                      ("stop_frame", max(len(task.frames) - 1, 0)), ("frame_filter", "")):
        _sub(t, tag, text)
    labels = _sub(t, "labels")
    for name in task.labels:
        lab = _sub(labels, "label")
        _sub(lab, "name", name)
        _sub(lab, "color", color_of(task, name))
        _sub(lab, "type", "rectangle")
        attrs = _sub(lab, "attributes")
        for attr in ([] if name == IGNORE else task.attributes):
            _attribute_spec(attrs, task, attr)
    _sub(meta, "dumped", now)
    for i, f in enumerate(task.frames):
        image = _sub(root, "image", id=i, name=f.file, width=f.width, height=f.height)
        for b in f.boxes:
            _sub(image, "box", label=b.label, source="auto", occluded=0, xtl=f"{b.bbox[0]:.2f}", ytl=f"{b.bbox[1]:.2f}",
                 xbr=f"{b.bbox[2]:.2f}", ybr=f"{b.bbox[3]:.2f}", z_order=0)
    ET.indent(root)
    ET.ElementTree(root).write(out / FILE, encoding="utf-8", xml_declaration=True)
    (out / "spec.md").write_text(render_spec(task.definition))
    return [FILE, "spec.md"]


@dataclass
class Node:
    """An XML element with the line it starts on."""

    tag: str
    attrib: dict
    line: int
    children: list["Node"] = field(default_factory=list)
    text: str = ""


def parse_xml(path: Path) -> Node:
    """The document element of ``path``, every element with its line; malformed XML is an InputError at its line."""
    parser = expat.ParserCreate()
    stack: list[Node] = []
    root: list[Node] = []

    def start(tag, attrib):
        node = Node(tag, attrib, parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def text(data):
        if stack:
            stack[-1].text += data

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, text
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except expat.ExpatError as exc:
        raise InputError(path, f"malformed XML: {expat.ErrorString(exc.code)} (column {exc.offset + 1})", exc.lineno) from None
    except OSError as exc:
        raise InputError(path, f"cannot read the returned labels: {exc.strerror}") from None
    return root[0]


def read(path: Path, task: Task, images: Path) -> Read:
    """The frames of returned CVAT XML ``path``, and every structural problem (with its element's line)."""
    root = parse_xml(path)
    if root.tag != "annotations":
        raise InputError(path, f"expected CVAT for images XML (<annotations>), got <{root.tag}>", root.line)
    files = task.by_file()
    frames, problems, seen = [], [], set()
    for el in root.children:
        if el.tag == "track":
            problems.append(violation(path, el.line, None, "unsupported_shape", "a <track> (CVAT for video): export the "
                                      "task as CVAT for images 1.1"))
        if el.tag != "image":
            continue
        name = PurePosixPath(el.attrib.get("name", "")).name  # CVAT may keep an upload folder in the name
        if name not in files:
            problems.append(violation(path, el.line, None, "unknown_frame", f"<image name={el.attrib.get('name')!r}> "
                                      "is not a frame of the task"))
            continue
        tf = files[name]
        if tf.frame in seen:
            problems.append(violation(path, el.line, tf.frame, "duplicate_frame", f"<image name={name!r}> appears twice"))
            continue
        seen.add(tf.frame)
        size = (el.attrib.get("width"), el.attrib.get("height"))
        if size != (str(tf.width), str(tf.height)):
            problems.append(violation(path, el.line, tf.frame, "image_size", f"<image> is {size[0]}x{size[1]}, the task's "
                                      f"image is {tf.width}x{tf.height}"))
        objects = []
        for shape in el.children:
            if shape.tag != "box":
                if shape.tag in SHAPES:
                    problems.append(violation(path, shape.line, tf.frame, "unsupported_shape", f"<{shape.tag}>: only "
                                              "boxes (<box>) are labels of a detection2d task"))
                continue
            obj, found = _box(path, shape, tf)
            problems += found
            if obj is not None:
                objects.append(obj)
        frames.append(Frame(tf.frame, images / tf.file, tf.width, tf.height, tuple(objects), path))
    return frames, problems + missing_frames(path, root.line, task, seen), {}  # the line says where


def _box(path: Path, el: Node, tf) -> tuple[Object | None, list[dict]]:
    label = el.attrib.get("label")
    try:
        bbox = tuple(float(el.attrib[k]) for k in ("xtl", "ytl", "xbr", "ybr"))
    except (KeyError, ValueError) as exc:
        return None, [violation(path, el.line, tf.frame, "malformed", f"<box>: xtl, ytl, xbr, ybr must be numbers ({exc})",
                                label)]
    attrs, problems = {}, []
    for a in el.children:
        if a.tag != "attribute":
            continue
        name = a.attrib.get("name", "")
        try:
            attrs[name] = attribute_value(name, a.text.strip())
        except ValueError as exc:
            problems.append(violation(path, a.line, tf.frame, "malformed", f"attribute {name!r}: {exc}", label))
    return Object(label or "", bbox, attrs, line=el.line), problems + check_box(path, el.line, tf, label, bbox)


register(LabelFormat("cvat", write, read, f"CVAT for images 1.1 XML ({FILE})"))
