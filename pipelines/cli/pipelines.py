"""``admlops run / compile / submit / upload``: the pipelines, locally (kfp.local) and on a cluster."""
from __future__ import annotations

from pathlib import Path

from admlops.objectstore import DEFAULT_STORE
from admlops.pipelines.cli.common import print_json


def cmd_run(args) -> None:
    from admlops.errors import UsageError
    from admlops.pipelines.local import run_local
    from admlops.pipelines.registry import parse_params
    from admlops.pipelines.report import summarize_run

    if not args.local:
        raise UsageError("run: only --local is available; on a cluster, `admlops submit` the pipeline")
    run_dir = run_local(args.pipeline, parse_params(args.pipeline, args.param), args.store, verbose=args.verbose)
    print(summarize_run(run_dir))


def cmd_compile(args) -> None:
    from admlops import images
    from admlops.pipelines.k8s_manifest import write_manifests
    from admlops.pipelines.registry import PIPELINE_DIR, PIPELINES, compile_pipeline, pipeline

    for name in args.pipelines or list(PIPELINES):
        pipeline(name)  # a usage error for an unknown name
        if args.kubernetes_manifest:
            suffix = f"-{args.profile}" if args.profile else ""
            print(write_manifests(name, Path(args.out_dir) / f"{name}{suffix}.k8s.yaml", args.version, args.namespace,
                                  args.profile))
        else:
            print(compile_pipeline(name, args.out_dir, args.profile))
    if Path(args.out_dir).resolve() == PIPELINE_DIR and images.sync_manifests():
        print(f"{images.KUSTOMIZATION}: image tag {images.tag()}")


def cmd_submit(args) -> None:
    from admlops.pipelines.registry import PIPELINES, parse_params
    from admlops.pipelines.submit import submit

    params = parse_params(args.pipeline, args.param) if args.pipeline in PIPELINES else \
        dict(p.partition("=")[::2] for p in args.param)
    print_json(submit(args.pipeline, args.host, params, args.namespace, args.experiment, args.run_name, args.wait,
                      args.timeout, profile=args.profile))


def cmd_upload(args) -> None:
    from admlops.pipelines.submit import upload

    print_json(upload(args.pipeline, args.host, args.version, args.namespace, args.description, profile=args.profile))


def add_commands(sub) -> None:
    from admlops.pipelines.registry import PIPELINE_DIR, PIPELINES

    s = sub.add_parser("run", help="run a pipeline")
    s.add_argument("pipeline", choices=sorted(PIPELINES))
    s.add_argument("--local", action="store_true", help="on this machine with kfp.local (subprocesses, no Docker)")
    s.add_argument("--store", default=DEFAULT_STORE, help="local directory: run artifacts, and the lake/zoo unless "
                   "--param store=URI (default: $ADMLOPS_STORE or ~/.admlops/store)")
    s.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="pipeline parameter (repeatable)")
    s.add_argument("--verbose", action="store_true", help="stream every task's full log (always written to "
                   "<run>/logs/<task>.log)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("compile", help="compile pipelines to KFP YAML (and keep the manifests' image tag current)")
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
