"""Pascal VOC: ``Annotations/*.xml`` (1-based pixel ``bndbox``) and ``JPEGImages/``."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from xml.parsers import expat

from admlops.components.convert.readers.fields import flag, number, pixels, sized_image
from admlops.components.convert.records import READERS, STRICT, Frame, Object, Skips
from admlops.errors import InputError

T = TypeVar("T")
LINE = "__line__"  # the attribute _parse_xml gives every element: the line of its start tag


def _parse_xml(path: Path) -> ET.Element:
    """The element tree of an XML file, each element carrying its start tag's line in ``attrib[LINE]`` (ElementTree
    keeps no positions; expat, which it parses with, knows them), so errors can name the line."""
    builder, parser = ET.TreeBuilder(), expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = lambda tag, attrs: builder.start(tag, {**attrs, LINE: str(parser.CurrentLineNumber)})
    parser.EndElementHandler, parser.CharacterDataHandler = builder.end, builder.data
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read annotation file: {exc.strerror}") from None
    except expat.ExpatError as exc:
        raise InputError(path, f"invalid VOC XML: {exc}", exc.lineno) from None
    return builder.close()


def _line(element: ET.Element) -> int:
    return int(element.get(LINE))


def _voc_value(parent: ET.Element, path: str, xml_file: Path, where: str,
               parse: Callable[[str, Path, str, int], T]) -> T | None:
    """``parse(text, file, element path, line)`` of the element at ``path`` under ``parent``; None when it is absent
    or empty."""
    element = parent.find(path)
    if element is None or not (element.text or "").strip():
        return None
    return parse(element.text.strip(), xml_file, f"{where}{path}", _line(element))


@READERS.register("voc")
def read_voc(root: str | Path, image_root: str | Path | None = None, image_set: str | None = None,
             skips: Skips = STRICT) -> Iterator[Frame]:
    """``root`` holds ``Annotations/`` and ``JPEGImages/`` (e.g. VOCdevkit/VOC2012); ``image_root`` is an image
    folder in place of ``JPEGImages/``; ``image_set`` names an ``ImageSets/Main/<set>.txt`` list, else every
    annotation is read. Accepted as the devkit defines them: <difficult>, <truncated>, <occluded> 0 or 1 (absent
    or empty: not set); <size> in whole pixels ("500.0" too; absent or 0: read from the image); <bndbox> numbers.
    Errors name the file, the line and the element (``object[2]/difficult``, 1-based as in XPath)."""
    root = Path(root)
    ann_dir, images = root / "Annotations", Path(image_root) if image_root else root / "JPEGImages"
    if not ann_dir.is_dir():
        raise InputError(ann_dir, "not a Pascal VOC dataset: directory missing")
    if image_set:
        set_file = root / "ImageSets" / "Main" / f"{image_set}.txt"
        if not set_file.is_file():
            raise InputError(set_file, f"image set {image_set!r} not found")
        files = [ann_dir / f"{i}.xml" for i in set_file.read_text().split()]
    else:
        files = sorted(ann_dir.glob("*.xml"))
    for xml_file in files:
        with skips.sample(xml_file.stem):
            node = _parse_xml(xml_file)
            image = images / ((node.findtext("filename") or "").strip() or f"{xml_file.stem}.jpg")
            width, height = (_voc_value(node, f"size/{k}", xml_file, "", pixels) for k in ("width", "height"))
            width, height = sized_image(image, width, height, xml_file, "filename")
            yield Frame(xml_file.stem, image, width, height, tuple(_voc_objects(node, xml_file)), xml_file)


def _voc_objects(node: ET.Element, xml_file: Path) -> Iterator[Object]:
    for i, obj in enumerate(node.findall("object"), start=1):
        where, box, name = f"object[{i}]/", obj.find("bndbox"), (obj.findtext("name") or "").strip()
        if box is None or not name:
            raise InputError(xml_file, f"object[{i}]: needs <name> and <bndbox>", _line(obj))
        coords = [_voc_value(box, k, xml_file, f"{where}bndbox/", number) for k in ("xmin", "ymin", "xmax", "ymax")]
        if None in coords:
            raise InputError(xml_file, f"{where}bndbox: needs <xmin>, <ymin>, <xmax> and <ymax>", _line(box))
        xmin, ymin, xmax, ymax = coords
        flags = {k: _voc_value(obj, k, xml_file, where, flag) for k in ("difficult", "truncated", "occluded")}
        # VOC pixel indices are 1-based and inclusive: [xmin - 1, xmax) in 0-based continuous coordinates
        yield Object(name, (xmin - 1, ymin - 1, xmax, ymax), {k: v for k, v in flags.items() if v is not None}, line=_line(obj))
