"""``admlops data ...``: synthesise, convert, merge, validate, analyse and version datasets."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from admlops.errors import UsageError
from admlops.pipelines.cli.common import (
    list_versions, print_json, report_skips, reader_args, skips, show_version, source_args, store_arg, strict_arg,
)


def cmd_synth(args) -> None:
    if args.format == "kitti":
        from admlops.components.synth.kitti import synth_kitti

        out = synth_kitti(args.out, frames=args.frames, seed=args.seed)
        print(f"wrote {args.frames} synthetic KITTI frames to {out}")
    elif args.format == "recording":
        from admlops.components.synth.recording import Events, synth_recording

        n = args.frames
        events = Events(blurred=(n // 5,), dark=(n // 5 + 2,), bright=(n // 5 + 3,), stop=(n // 2, n // 2 + 10),
                        missing={"front": (n - 3,)}) if args.with_cases else None
        rec = synth_recording(args.out, frames=n, cameras=args.cameras, storage=args.storage, seed=args.seed,
                              compressed=not args.raw, layout=args.layout, events=events)
        print(f"wrote a {args.storage} recording of {n} LiDAR scans and {len(rec['cameras'])} camera(s) to {args.out}")
    else:
        from admlops.components.synth.nuscenes import synth_nuscenes

        out = synth_nuscenes(args.out, scenes=args.scenes, samples_per_scene=args.samples, sweeps_per_sample=args.sweeps,
                             seed=args.seed)
        print(f"wrote {args.scenes} synthetic nuScenes scenes ({args.scenes * args.samples} samples) to {out}")


def cmd_ingest(args) -> None:
    import tempfile

    from admlops.components.ingest.ingest import ingest
    from admlops.components.ingest.screen import screen

    with tempfile.TemporaryDirectory(prefix="admlops-ingest-") as scratch:
        ingest(args.src, args.definition, Path(scratch) / "frames", args.store)
        summary = screen(Path(scratch) / "frames", args.definition, args.out, args.store, args.name)
    print_json({k: summary[k] for k in ("scans", "ingested", "kept", "dropped", "dataset_version")})
    print(f"screening report: {Path(args.out) / 'report' / 'screening.html'}", file=sys.stderr)


def cmd_convert(args) -> None:
    from admlops.components.convert.to_coco import convert_to_coco

    found = skips(args)
    print_json(convert_to_coco(args.src_format, args.src, args.out, args.definition, args.val_fraction, args.seed,
                               skips=found, **reader_args(args)))
    report_skips(found, args.out)


def cmd_validate(args) -> int:
    from admlops.components.analyze.validate import validate

    report = validate(args.src_format, args.src, args.definition, **reader_args(args))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    for v in report["violations"]:
        where = f"{v['file']}:{v['line']}" if v["line"] is not None else v["file"]
        print(f"{where}: {v['rule']}: {v['message']}")
    print(f"{report['frames']} frames, {report['objects']} objects, {len(report['violations'])} violations "
          f"{report['by_rule']}", file=sys.stderr)
    return 3 if report["violations"] else 0


def parse_merge_input(spec: str):
    """``NAME=FORMAT:PATH[:IMAGES]`` as a merge Source."""
    from admlops.components.convert.merge import Source

    name, _, rest = spec.partition("=")
    fmt, _, path = rest.partition(":")
    path, _, images = path.partition(":")
    if not (name and fmt and path):
        raise UsageError(f"--input {spec!r}: expected NAME=FORMAT:PATH[:IMAGES]")
    return Source(name, fmt, path, {"image_root": images} if images else {})


def cmd_merge(args) -> None:
    from admlops.components.convert.merge import merge

    found = skips(args)
    summary = merge([parse_merge_input(s) for s in args.input], args.out, args.definition, args.val_fraction, args.seed,
                    found)
    print(f"merged {summary['frames_per_source']} into {args.out}: {summary['frames']}; "
          f"{len(summary['duplicates'])} duplicate images skipped (listed in summary.json)")
    report_skips(found, args.out)


def cmd_infos(args) -> None:
    found = skips(args)
    if args.src_format == "kitti":
        from admlops.components.infos.kitti import write_kitti_infos

        counts = write_kitti_infos(args.src, args.out, args.prefix or "kitti", skips=found)
    else:
        from admlops.components.infos.nuscenes import write_nuscenes_infos

        counts = write_nuscenes_infos(args.src, args.out, args.nuscenes_version, args.prefix or "nuscenes", args.max_sweeps,
                                      skips=found)
    prefix = args.prefix or args.src_format
    print(f"wrote {', '.join(f'{prefix}_infos_{k}.pkl ({v} frames)' for k, v in counts.items())}, "
          f"{prefix}_dbinfos_train.pkl and {prefix}_gt_database/ to {args.out}")
    report_skips(found, args.out)


def cmd_analyze(args) -> None:
    from admlops.components.analyze.report import analyze

    summary = analyze(args.dataset, args.out)
    print((Path(args.out) / "report.md").read_text())
    print(f"report: {Path(args.out) / 'report.html'} ({len(summary['plots'])} plots)")


def cmd_spec(args) -> None:
    from admlops.components.analyze.spec import render_spec
    from admlops.definition import load_definition

    text = render_spec(load_definition(args.definition))
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


def cmd_push(args) -> None:
    from admlops import catalog
    from admlops.objectstore import open_store

    v = catalog.push(open_store(args.store), "datasets", args.name, args.src, args.version)
    print(f"{v.name}@{v.version}: {v.files} files, {v.bytes} bytes, manifest sha256 {v.manifest_sha256}")


def cmd_pull(args) -> None:
    from admlops import catalog, refs
    from admlops.objectstore import open_store

    store = open_store(args.store)
    v = catalog.pull(store, "datasets", *refs.resolve(store, "datasets", args.ref), args.dest)
    print(f"{v.name}@{v.version}: {v.files} files verified into {args.dest}")


def add_commands(sub) -> None:
    from admlops.components.infos.infos import SOURCE_FORMATS

    data = sub.add_parser("data", help="dataset commands").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write a synthetic dataset in a real format").add_subparsers(dest="format", required=True)
    s = synth.add_parser("kitti", help="synthetic KITTI object data (image_2, label_2, calib, velodyne, ImageSets)")
    s.add_argument("--frames", type=int, required=True, help="number of frames")
    s.add_argument("--out", required=True, help="output directory (replaced atomically)")
    s.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes")
    s.set_defaults(func=cmd_synth)
    s = synth.add_parser("nuscenes", help="synthetic nuScenes v1.0-mini (13 tables, LiDAR keyframes and sweeps, 6 cameras)")
    s.add_argument("--scenes", type=int, default=2, help="scenes (1-10, named from the official mini train/val split)")
    s.add_argument("--samples", type=int, default=4, help="keyframes per scene")
    s.add_argument("--sweeps", type=int, default=2, help="LiDAR sweeps between keyframes (0-9)")
    s.add_argument("--out", required=True, help="output directory (replaced atomically)")
    s.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes")
    s.set_defaults(func=cmd_synth)

    s = synth.add_parser("recording", help="a synthetic recorded drive (ROS 2 MCAP / sqlite3 bag or ROS 1 bag): moving "
                         "ego, LiDAR, cameras, tf; the default topics of road-3class's recording section")
    s.add_argument("out", help="the bag to write: a rosbag2 directory, or a .bag file with --storage ros1")
    s.add_argument("--frames", type=int, default=40, help="LiDAR scans (10 Hz)")
    s.add_argument("--cameras", type=int, default=1, help="cameras (1-6) around the ego")
    s.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3", "ros1"))
    s.add_argument("--raw", action="store_true", help="raw sensor_msgs/Image (bgr8) instead of CompressedImage (JPEG)")
    s.add_argument("--layout", default="xyzi", choices=("xyzi", "ouster", "reordered"), help="PointCloud2 field layout")
    s.add_argument("--with-cases", action="store_true", help="screening cases: a blurred, a dark and an over-exposed "
                   "frame, a 1 s stop, a missing front image")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.set_defaults(func=cmd_synth)

    s = data.add_parser("ingest", help="recorded drives (ROS 2 bags: sqlite3, MCAP; ROS 1 bags) -> synchronised, screened "
                        "frames: an unlabeled dataset version iterate mines (exit 3 on a bad recording)")
    s.add_argument("src", help="a .bag / .mcap / .db3 file, a rosbag2 directory, a folder of them, or NAME@VERSION")
    s.add_argument("out", help="output directory: the frames kept, annotations/pool.json, report/ (replaced atomically)")
    s.add_argument("--definition", default="road-3class", help="the definition whose recording section names the "
                   "topics, frames and screening thresholds")
    s.add_argument("--name", help="dataset version name (default: the first recording's name + -frames)")
    store_arg(s)
    s.set_defaults(func=cmd_ingest)

    s = data.add_parser("convert", help="KITTI / nuScenes / COCO / VOC / YOLO / BDD100K -> COCO json for mmdet")
    source_args(s)
    s.add_argument("out", help="output directory (replaced atomically)")
    s.add_argument("--val-fraction", type=float, default=0.2, help="val share (KITTI: when there are no ImageSets files)")
    s.add_argument("--seed", type=int, default=0, help="seed of the hash split")
    strict_arg(s)
    s.set_defaults(func=cmd_convert)
    s = data.add_parser("validate", help="check a dataset against its definition's labeling standard (exit 3 on violations)")
    source_args(s)
    s.add_argument("--out", help="also write the full report as JSON here")
    s.set_defaults(func=cmd_validate)
    s = data.add_parser("merge", help="several sources -> one task dataset (COCO) through class mappings")
    s.add_argument("out", help="output directory (replaced atomically)")
    s.add_argument("--input", action="append", required=True, metavar="NAME=FORMAT:PATH[:IMAGES]",
                   help="a source, e.g. kitti=kitti:/data/kitti or bdd=bdd100k:det_val.json:/data/bdd/images (repeatable)")
    s.add_argument("--definition", default="road-3class", help="a definition mapping every source format")
    s.add_argument("--val-fraction", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=0)
    strict_arg(s)
    s.set_defaults(func=cmd_merge)
    s = data.add_parser("infos", help="KITTI / nuScenes -> an mmdet3d data root: v2 infos, GT database (and KITTI's "
                        "reduced scans), sources linked in")
    s.add_argument("src", help="kitti: the root (training/ with calib and velodyne, ImageSets/); nuscenes: the root "
                   "holding v1.0-*/, samples/, sweeps/")
    s.add_argument("out", help="output directory: point the mmdet3d config's data_root here (replaced atomically)")
    s.add_argument("--from", dest="src_format", default="kitti", choices=SOURCE_FORMATS)
    s.add_argument("--nuscenes-version", default="v1.0-trainval", help="nuscenes: v1.0-trainval, v1.0-mini or v1.0-test")
    s.add_argument("--max-sweeps", type=int, default=10, help="nuscenes: LiDAR sweeps kept per sample")
    s.add_argument("--prefix", help="file name prefix (mmdet3d's --extra-tag; default: the format)")
    strict_arg(s)
    s.set_defaults(func=cmd_infos)
    s = data.add_parser("analyze", help="HTML report (plots), Markdown and JSON summary of a converted dataset or "
                        "of a screened collection (route, speed, light, LiDAR density)")
    s.add_argument("dataset", help="convert's output directory, or screen's (an unlabeled collection)")
    s.add_argument("out", help="directory for report.html, report.md and summary.json")
    s.set_defaults(func=cmd_analyze)
    s = data.add_parser("spec", help="render a definition's labeling standard as a Markdown document")
    s.add_argument("--definition", default="kitti-3class", help="a name in configs/datasets or a YAML path")
    s.add_argument("--out", help="write to this file instead of standard output")
    s.set_defaults(func=cmd_spec)

    s = data.add_parser("push", help="publish a directory as an immutable dataset version")
    s.add_argument("src", help="directory to publish")
    s.add_argument("--name", required=True, help="dataset name")
    s.add_argument("--version", help="version id (default: v + content hash)")
    store_arg(s)
    s.set_defaults(func=cmd_push)
    s = data.add_parser("pull", help="download a dataset version, verifying every file")
    s.add_argument("ref", help="NAME@VERSION")
    s.add_argument("dest", help="destination directory (replaced atomically)")
    store_arg(s)
    s.set_defaults(func=cmd_pull)
    s = data.add_parser("ls", help="list committed dataset versions")
    s.add_argument("name", nargs="?", help="only this dataset")
    store_arg(s)
    s.set_defaults(func=lambda a: list_versions("datasets", a))
    s = data.add_parser("show", help="a dataset version's record and manifest")
    s.add_argument("ref", help="NAME@VERSION")
    store_arg(s)
    s.set_defaults(func=lambda a: show_version("datasets", a))
