"""What several command groups share: JSON output, the store option, listing and showing versions, bad-sample
options and the source arguments of the dataset readers. References (NAME@VERSION) are ``admlops.refs``'s."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from admlops.objectstore import DEFAULT_STORE


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def store_arg(parser) -> None:
    parser.add_argument("--store", default=DEFAULT_STORE,
                        help="store URI: s3://bucket/prefix, file:// or a path (default: $ADMLOPS_STORE or ~/.admlops/store)")


def strict_arg(parser) -> None:
    parser.add_argument("--strict", action="store_true", help="fail (exit 3) on the first bad sample instead of "
                        "skipping bad samples and listing them in OUT/skipped.json")


def skips(args):
    from admlops.components.convert.records import Skips

    return Skips(strict=args.strict)


def report_skips(found, out) -> None:
    if not found.strict:
        print(f"{len(found.items)} bad samples skipped" + (f", listed in {Path(out) / 'skipped.json'}" if found.items else ""),
              file=sys.stderr)


def source_args(parser) -> None:
    """The dataset a reader reads: SRC, its format, and the format-specific options."""
    from admlops.components.convert.records import READERS

    parser.add_argument("src", help="kitti: the root (training/, ImageSets/); coco, bdd100k: the label json; voc: the "
                        "folder with Annotations/ and JPEGImages/; yolo: the folder with data.yaml")
    parser.add_argument("--from", dest="src_format", default="kitti", choices=READERS.names())
    parser.add_argument("--definition", default="kitti-3class", help="dataset definition: a name in configs/datasets or a YAML path")
    parser.add_argument("--images", help="coco, bdd100k, voc: the image folder (coco default: beside the json; voc: JPEGImages/)")
    parser.add_argument("--yolo-split", help="yolo: which images/<split> to read (default: train)")
    parser.add_argument("--nuscenes-version", help="nuscenes: the table folder, e.g. v1.0-mini (default: v1.0-trainval)")


def reader_args(args) -> dict:
    return {k: v for k, v in (("image_root", args.images), ("split", args.yolo_split), ("version", args.nuscenes_version)) if v}


def list_versions(kind: str, args) -> None:
    """``data ls`` / ``zoo ls``: one line per committed version."""
    from admlops import catalog
    from admlops.objectstore import open_store

    store = open_store(args.store)
    for name, version in catalog.list_versions(store, kind, args.name):
        v = catalog.show(store, kind, name, version)
        print(f"{name}@{version}\t{v.files} files\t{v.bytes} bytes\t{v.info['created_by']}")


def show_version(kind: str, args) -> None:
    """``data show`` / ``zoo show``: a version's record, manifest and (models) aliases as JSON."""
    from admlops import catalog, refs, zoo
    from admlops.objectstore import open_store

    store = open_store(args.store)
    name, version = refs.resolve(store, kind, args.ref)
    v = catalog.show(store, kind, name, version)
    out = {"uri": store.uri(f"{kind}/{name}/{version}/"), **v.info}
    out["files"] = catalog.read_manifest(store, kind, name, version)
    if kind == "models":
        out["aliases"] = {a: r["version"] for a, r in zoo.aliases(store, name).items()}
    print_json(out)
