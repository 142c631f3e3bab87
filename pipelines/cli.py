"""``admlops``: every lifecycle step as a command, plus compiling and running the pipelines.

Exit codes: 0 success; 1 an unexpected failure (a bug or an environment problem: see the traceback);
2 a usage error; 3 bad input data (the message names the file and line); 4 a pipeline task failed
(its log, printed above, says why); 5 a storage error (the message names the store and object); 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from admlops.errors import AdmlopsError, UsageError
from admlops.objectstore import DEFAULT_STORE


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_synth(args) -> None:
    if args.format == "kitti":
        from admlops.components.synth.kitti import synth_kitti

        out = synth_kitti(args.out, frames=args.frames, seed=args.seed)
        print(f"wrote {args.frames} synthetic KITTI frames to {out}")
    else:
        from admlops.components.synth.nuscenes import synth_nuscenes

        out = synth_nuscenes(args.out, scenes=args.scenes, samples_per_scene=args.samples, sweeps_per_sample=args.sweeps,
                             seed=args.seed)
        print(f"wrote {args.scenes} synthetic nuScenes scenes ({args.scenes * args.samples} samples) to {out}")


def _add_source_args(parser) -> None:
    """The dataset a reader reads: SRC, its format, and the format-specific options."""
    parser.add_argument("src", help="kitti: the root (training/, ImageSets/); coco, bdd100k: the label json; voc: the "
                        "folder with Annotations/ and JPEGImages/; yolo: the folder with data.yaml")
    parser.add_argument("--from", dest="src_format", default="kitti", choices=["kitti", "coco", "voc", "yolo", "bdd100k", "nuscenes"])
    parser.add_argument("--definition", default="kitti-3class", help="dataset definition: a name in configs/datasets or a YAML path")
    parser.add_argument("--images", help="coco, bdd100k: the image folder (coco default: beside the json)")
    parser.add_argument("--yolo-split", help="yolo: which images/<split> to read (default: train)")
    parser.add_argument("--nuscenes-version", help="nuscenes: the table folder, e.g. v1.0-mini (default: v1.0-trainval)")


def _reader_args(args) -> dict:
    return {k: v for k, v in (("image_root", args.images), ("split", args.yolo_split), ("version", args.nuscenes_version)) if v}


def _strict_arg(parser) -> None:
    parser.add_argument("--strict", action="store_true", help="fail (exit 3) on the first bad sample instead of "
                        "skipping bad samples and listing them in OUT/skipped.json")


def _skips(args):
    from admlops.components.convert.records import Skips

    return Skips(strict=args.strict)


def _report_skips(skips, out) -> None:
    if not skips.strict:
        print(f"{len(skips.items)} bad samples skipped" + (f", listed in {Path(out) / 'skipped.json'}" if skips.items else ""),
              file=sys.stderr)


def cmd_convert(args) -> None:
    from admlops.components.convert.kitti_coco import convert_to_coco

    skips = _skips(args)
    _print_json(convert_to_coco(args.src_format, args.src, args.out, args.definition, args.val_fraction, args.seed,
                                skips=skips, **_reader_args(args)))
    _report_skips(skips, args.out)


def cmd_validate(args) -> int:
    from admlops.components.analyze.validate import validate

    report = validate(args.src_format, args.src, args.definition, **_reader_args(args))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    for v in report["violations"]:
        where = f"{v['file']}:{v['line']}" if v["line"] is not None else v["file"]
        print(f"{where}: {v['rule']}: {v['message']}")
    print(f"{report['frames']} frames, {report['objects']} objects, {len(report['violations'])} violations "
          f"{report['by_rule']}", file=sys.stderr)
    return 3 if report["violations"] else 0


def cmd_merge(args) -> None:
    from admlops.components.convert.merge import Source, merge

    sources = []
    for spec in args.input:
        name, _, rest = spec.partition("=")
        fmt, _, path = rest.partition(":")
        path, _, images = path.partition(":")
        if not (name and fmt and path):
            raise UsageError(f"--input {spec!r}: expected NAME=FORMAT:PATH[:IMAGES]")
        sources.append(Source(name, fmt, path, {"image_root": images} if images else {}))
    skips = _skips(args)
    summary = merge(sources, args.out, args.definition, args.val_fraction, args.seed, skips)
    print(f"merged {summary['frames_per_source']} into {args.out}: {summary['frames']}; "
          f"{len(summary['duplicates'])} duplicate images skipped (listed in summary.json)")
    _report_skips(skips, args.out)


def cmd_infos(args) -> None:
    if args.src_format == "kitti":
        from admlops.components.convert.mmdet3d_infos import write_kitti_infos

        counts = write_kitti_infos(args.src, args.out, args.prefix or "kitti", skips=(skips := _skips(args)))
    else:
        from admlops.components.convert.nuscenes_infos import write_nuscenes_infos

        counts = write_nuscenes_infos(args.src, args.out, args.nuscenes_version, args.prefix or "nuscenes", args.max_sweeps,
                                      skips=(skips := _skips(args)))
    prefix = args.prefix or args.src_format
    print(f"wrote {', '.join(f'{prefix}_infos_{k}.pkl ({v} frames)' for k, v in counts.items())}, "
          f"{prefix}_dbinfos_train.pkl and {prefix}_gt_database/ to {args.out}")
    _report_skips(skips, args.out)


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


def cmd_train(args) -> int | None:
    from admlops.components.train.train import launch, train_uri

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # re-run this command under torchrun
        return launch(args.nproc, args.argv)
    summary = train_uri(args.dataset, args.out, config=args.config, max_iters=args.max_iters, batch_size=args.batch_size,
                        seed=args.seed, checkpoint_interval=args.checkpoint_interval, store=args.store or "",
                        run_id=args.run_id or "", wandb=args.wandb)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_json(summary)
    return None


def cmd_evaluate(args) -> None:
    from admlops.components.evaluate.evaluate import evaluate

    _print_json(evaluate(args.dataset, args.model, args.out, args.split))


def cmd_export(args) -> None:
    from admlops.components.export.export import export

    pytorch = json.loads(Path(args.pytorch_metrics).read_text()) if args.pytorch_metrics else None
    _print_json(export(args.dataset, args.model, args.out, args.deploy_config, pytorch))


def cmd_benchmark(args) -> None:
    from admlops.components.benchmark.benchmark import benchmark

    benchmark(args.dataset, args.onnx, args.out, args.warmup, args.max_images, args.threads)
    print((Path(args.out) / "benchmark.md").read_text())


def _ref(text: str) -> tuple[str, str]:
    name, sep, version = text.partition("@")
    if not sep or not name or not version:
        raise UsageError(f"{text!r}: expected NAME@VERSION")
    return name, version


def cmd_data_push(args) -> None:
    from admlops import catalog
    from admlops.objectstore import open_store

    v = catalog.push(open_store(args.store), "datasets", args.name, args.src, args.version)
    print(f"{v.name}@{v.version}: {v.files} files, {v.bytes} bytes, manifest sha256 {v.manifest_sha256}")


def cmd_data_pull(args) -> None:
    from admlops import catalog
    from admlops.objectstore import open_store

    v = catalog.pull(open_store(args.store), "datasets", *_ref(args.ref), args.dest)
    print(f"{v.name}@{v.version}: {v.files} files verified into {args.dest}")


def _cmd_ls(kind: str, args) -> None:
    from admlops import catalog
    from admlops.objectstore import open_store

    store = open_store(args.store)
    for name, version in catalog.list_versions(store, kind, args.name):
        v = catalog.show(store, kind, name, version)
        print(f"{name}@{version}\t{v.files} files\t{v.bytes} bytes\t{v.info['created_by']}")


def _cmd_show(kind: str, args) -> None:
    from admlops import catalog, zoo
    from admlops.objectstore import open_store

    store = open_store(args.store)
    name, version = _ref(args.ref)
    if kind == "models":
        version = zoo.resolve(store, name, version)
    v = catalog.show(store, kind, name, version)
    out = {"uri": store.uri(f"{kind}/{name}/{version}/"), **v.info}
    out["files"] = catalog.read_manifest(store, kind, name, version)
    if kind == "models":
        out["aliases"] = {a: r["version"] for a, r in zoo.aliases(store, name).items()}
    _print_json(out)


def cmd_zoo_promote(args) -> None:
    from admlops import zoo
    from admlops.objectstore import open_store

    record = zoo.promote(open_store(args.store), args.name, args.version, args.alias)
    print(f"{args.name}:{args.alias} -> {record['version']} (was {record['previous']}), by {record['by']}")


def _parse_params(name: str, pairs: list[str]) -> dict:
    from admlops.pipelines.registry import PIPELINES

    inputs = PIPELINES[name].component_spec.inputs or {}
    casts = {"Integer": int, "Float": float, "Boolean": lambda v: v.lower() in ("1", "true", "yes"), "String": str}
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in inputs:
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE with KEY one of {', '.join(inputs)}")
        try:
            params[key] = casts.get(inputs[key].type, str)(value)
        except ValueError:
            raise UsageError(f"--param {pair!r}: expected a {inputs[key].type}") from None
    return params


def cmd_run(args) -> None:
    from admlops.pipelines.local import run_local
    from admlops.pipelines.report import summarize_run

    if not args.local:
        raise UsageError("run: only --local is available; on a cluster, submit the compiled pipeline")
    run_dir = run_local(args.pipeline, _parse_params(args.pipeline, args.param), args.store)
    print(summarize_run(run_dir))


def cmd_compile(args) -> None:
    from admlops.pipelines.k8s_manifest import write_manifests
    from admlops.pipelines.registry import PIPELINES, compile_pipeline

    for name in args.pipelines or list(PIPELINES):
        if args.kubernetes_manifest:
            suffix = f"-{args.profile}" if args.profile else ""
            print(_usage(write_manifests, name, Path(args.out_dir) / f"{name}{suffix}.k8s.yaml", args.version,
                         args.namespace, args.profile))
        else:
            print(compile_pipeline(name, args.out_dir, args.profile))


def _usage(fn, *args, **kwargs):
    """Call ``fn``; a ValueError (a bad pipeline, version or parameter name) is a usage error (exit 2)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_submit(args) -> None:
    from admlops.pipelines.submit import submit

    params = _parse_params(args.pipeline, args.param) if not args.pipeline.endswith((".yaml", ".yml")) else \
        dict(p.partition("=")[::2] for p in args.param)
    _print_json(_usage(submit, args.pipeline, args.host, params, args.namespace, args.experiment, args.run_name,
                       args.wait, args.timeout, profile=args.profile))


def cmd_upload(args) -> None:
    from admlops.pipelines.submit import upload

    _print_json(_usage(upload, args.pipeline, args.host, args.version, args.namespace, args.description,
                       profile=args.profile))


def build_parser() -> argparse.ArgumentParser:
    from admlops.pipelines.registry import PIPELINE_DIR, PIPELINES

    p = argparse.ArgumentParser(prog="admlops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

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
    s = data.add_parser("convert", help="KITTI / nuScenes / COCO / VOC / YOLO / BDD100K -> COCO json for mmdet")
    _add_source_args(s)
    s.add_argument("out", help="output directory (replaced atomically)")
    s.add_argument("--val-fraction", type=float, default=0.2, help="val share (KITTI: when there are no ImageSets files)")
    s.add_argument("--seed", type=int, default=0, help="seed of the hash split")
    _strict_arg(s)
    s.set_defaults(func=cmd_convert)

    s = data.add_parser("validate", help="check a dataset against its definition's labeling standard (exit 3 on violations)")
    _add_source_args(s)
    s.add_argument("--out", help="also write the full report as JSON here")
    s.set_defaults(func=cmd_validate)
    s = data.add_parser("merge", help="several sources -> one task dataset (COCO) through class mappings")
    s.add_argument("out", help="output directory (replaced atomically)")
    s.add_argument("--input", action="append", required=True, metavar="NAME=FORMAT:PATH[:IMAGES]",
                   help="a source, e.g. kitti=kitti:/data/kitti or bdd=bdd100k:det_val.json:/data/bdd/images (repeatable)")
    s.add_argument("--definition", default="road-3class", help="a definition mapping every source format")
    s.add_argument("--val-fraction", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=0)
    _strict_arg(s)
    s.set_defaults(func=cmd_merge)
    s = data.add_parser("infos", help="KITTI / nuScenes -> an mmdet3d data root: v2 infos, GT database (and KITTI's "
                        "reduced scans), sources linked in")
    s.add_argument("src", help="kitti: the root (training/ with calib and velodyne, ImageSets/); nuscenes: the root "
                   "holding v1.0-*/, samples/, sweeps/")
    s.add_argument("out", help="output directory: point the mmdet3d config's data_root here (replaced atomically)")
    s.add_argument("--from", dest="src_format", default="kitti", choices=["kitti", "nuscenes"])
    s.add_argument("--nuscenes-version", default="v1.0-trainval", help="nuscenes: v1.0-trainval, v1.0-mini or v1.0-test")
    s.add_argument("--max-sweeps", type=int, default=10, help="nuscenes: LiDAR sweeps kept per sample")
    s.add_argument("--prefix", help="file name prefix (mmdet3d's --extra-tag; default: the format)")
    _strict_arg(s)
    s.set_defaults(func=cmd_infos)
    s = data.add_parser("analyze", help="HTML report (plots), Markdown and JSON summary of a converted dataset")
    s.add_argument("dataset", help="convert's output directory")
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
    s.set_defaults(func=cmd_data_push)
    s = data.add_parser("pull", help="download a dataset version, verifying every file")
    s.add_argument("ref", help="NAME@VERSION")
    s.add_argument("dest", help="destination directory (replaced atomically)")
    s.set_defaults(func=cmd_data_pull)
    s = data.add_parser("ls", help="list committed dataset versions")
    s.add_argument("name", nargs="?", help="only this dataset")
    s.set_defaults(func=lambda a: _cmd_ls("datasets", a))
    s = data.add_parser("show", help="a dataset version's record and manifest")
    s.add_argument("ref", help="NAME@VERSION")
    s.set_defaults(func=lambda a: _cmd_show("datasets", a))

    zoo_p = sub.add_parser("zoo", help="model zoo commands").add_subparsers(dest="zoo_command", required=True)
    s = zoo_p.add_parser("ls", help="list committed model versions")
    s.add_argument("name", nargs="?", help="only this model")
    s.set_defaults(func=lambda a: _cmd_ls("models", a))
    s = zoo_p.add_parser("show", help="a model version's lineage, files and aliases")
    s.add_argument("ref", help="NAME@VERSION or NAME@ALIAS")
    s.set_defaults(func=lambda a: _cmd_show("models", a))
    s = zoo_p.add_parser("promote", help="point an alias (candidate, production, ...) at a version")
    s.add_argument("name")
    s.add_argument("version")
    s.add_argument("alias")
    s.set_defaults(func=cmd_zoo_promote)
    store_commands = [data.choices[c] for c in ("push", "pull", "ls", "show")] + list(zoo_p.choices.values())
    for parser in store_commands:
        parser.add_argument("--store", default=DEFAULT_STORE,
                            help="store URI: s3://bucket/prefix, file:// or a path (default: $ADMLOPS_STORE or ~/.admlops/store)")

    s = sub.add_parser("train", help="train a detector on a converted dataset")
    s.add_argument("dataset", help="convert's output directory, or its s3:// URI")
    s.add_argument("out", help="model output directory, or an s3:// URI to upload it to")
    s.add_argument("--config", default="rtmdet_tiny_kitti", help="a name in configs/models or a config path")
    s.add_argument("--max-iters", type=int, default=None, help="override the config's iteration count")
    s.add_argument("--batch-size", type=int, default=None, help="override the config's batch size (per process)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--nproc", type=int, default=1, help="processes on this node: DDP under torchrun (gloo on CPU, nccl "
                   "on GPU); inside a Kubeflow TrainJob the node count and rank come from its PET_* variables")
    s.add_argument("--checkpoint-interval", type=int, default=None, help="save a full checkpoint every N iterations")
    s.add_argument("--store", help="object store for checkpoints (with --run-id): a restarted run resumes from there")
    s.add_argument("--run-id", help="the run's id: checkpoints under <store>/checkpoints/<run-id>/, W&B group")
    s.add_argument("--wandb", action="store_true", help="log to Weights & Biases (offline unless WANDB_MODE is set)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="COCO bbox metrics of a trained model")
    s.add_argument("dataset", help="convert's output directory")
    s.add_argument("model", help="train's output directory")
    s.add_argument("out", help="directory for metrics.json")
    s.add_argument("--split", default="val", choices=["train", "val"])
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("export", help="ONNX export with mmdeploy, evaluated with ONNX Runtime")
    s.add_argument("dataset", help="convert's output directory")
    s.add_argument("model", help="train's output directory")
    s.add_argument("out", help="directory for end2end.onnx and metrics.json")
    s.add_argument("--deploy-config", default="detection_onnxruntime_dynamic", help="a name in configs/deploy or a path")
    s.add_argument("--pytorch-metrics", help="evaluate's metrics.json, to report the difference")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("benchmark", help="ONNX Runtime latency over the val images")
    s.add_argument("dataset", help="convert's output directory")
    s.add_argument("onnx", help="export's output directory")
    s.add_argument("out", help="directory for benchmark.json and benchmark.md")
    s.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    s.add_argument("--max-images", type=int, default=0, help="0 = every val image")
    s.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = its default)")
    s.set_defaults(func=cmd_benchmark)

    s = sub.add_parser("run", help="run a pipeline")
    s.add_argument("pipeline", choices=sorted(PIPELINES))
    s.add_argument("--local", action="store_true", help="on this machine with kfp.local (subprocesses, no Docker)")
    s.add_argument("--store", default=DEFAULT_STORE, help="local directory: run artifacts, and the lake/zoo unless --param store=URI (default: $ADMLOPS_STORE or ~/.admlops/store)")
    s.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="pipeline parameter (repeatable)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("compile", help="compile pipelines to KFP YAML")
    s.add_argument("pipelines", nargs="*", help=f"default: all ({', '.join(PIPELINES)})")
    s.add_argument("--out-dir", default=str(PIPELINE_DIR), help="where <name>.yaml goes (default: the package's pipelines/)")
    s.add_argument("--profile", help="a cluster profile (configs/cluster/NAME.yaml or a path): GPU steps, node selectors, "
                   "tolerations, /dev/shm, S3 secret, pull secrets; writes <name>-<profile>.yaml")
    s.add_argument("--kubernetes-manifest", action="store_true", help="write KFP's Pipeline + PipelineVersion resources "
                   "(<name>.k8s.yaml) for kubectl apply instead of the pipeline YAML")
    s.add_argument("--namespace", help="--kubernetes-manifest: the objects' namespace (default: kubectl's current)")
    s.add_argument("--version", help="--kubernetes-manifest: the version name (default: v + the spec's digest)")
    s.set_defaults(func=cmd_compile)

    def cluster_args(s, what: str) -> None:
        s.add_argument("pipeline", help=f"a pipeline name ({', '.join(PIPELINES)}) or a compiled .yaml")
        s.add_argument("--host", help="the KFP API endpoint (default: $KF_PIPELINES_ENDPOINT); a bearer token comes "
                       "from $ADMLOPS_KFP_TOKEN or $KF_PIPELINES_SA_TOKEN_PATH, never from the command line")
        s.add_argument("--namespace", help="the Kubeflow profile namespace (multi-user mode)")
        s.add_argument("--profile", help=f"cluster profile to compile with before {what} (configs/cluster/NAME.yaml)")

    s = sub.add_parser("submit", help="start a pipeline run on Kubeflow Pipelines; --wait fails (exit 4) when the run fails")
    cluster_args(s, "submitting")
    s.add_argument("--experiment", default="Default")
    s.add_argument("--run-name", help="default: <pipeline>-<timestamp>")
    s.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a pipeline parameter (repeatable)")
    s.add_argument("--wait", action="store_true", help="wait for the run to end; exit 4 unless it SUCCEEDED")
    s.add_argument("--timeout", type=int, default=24 * 3600, help="--wait: seconds before giving up (exit 4)")
    s.set_defaults(func=cmd_submit)
    s = sub.add_parser("upload", help="upload the pipeline as a new version (creating the pipeline if needed)")
    cluster_args(s, "uploading")
    s.add_argument("--version", required=True, help="the version name, e.g. a git sha")
    s.add_argument("--description")
    s.set_defaults(func=cmd_upload)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = args.func(args)
    except AdmlopsError as exc:
        print(f"admlops: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code or 0


if __name__ == "__main__":
    # torchrun workers of `admlops train --nproc N` get their arguments from the launching command (train.launch)
    sys.exit(main(json.loads(os.environ.pop("ADMLOPS_ARGV")) if "ADMLOPS_ARGV" in os.environ else None))
