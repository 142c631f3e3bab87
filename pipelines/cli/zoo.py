"""``admlops zoo ...``: the model zoo's versions, lineage and aliases."""
from __future__ import annotations

from admlops.pipelines.cli.common import list_versions, show_version, store_arg


def cmd_promote(args) -> None:
    from admlops import refs, zoo
    from admlops.objectstore import open_store

    store = open_store(args.store)
    version = refs.find(store, "models", args.name, args.version)  # a version id or an alias; exit 2 if unknown
    record = zoo.promote(store, args.name, version, args.alias, force=args.force, reason=args.reason or "")
    forced = f", FORCED past failed gates ({record['reason']})" if record.get("forced") else ""
    print(f"{args.name}:{args.alias} -> {record['version']} (was {record['previous']}), by {record['by']}{forced}")


def cmd_gated_promote(args) -> None:
    from pathlib import Path

    from admlops import refs
    from admlops.components.promote.promote import promote_gated

    with refs.local_copy(args.store, "datasets", args.dataset, prefix="admlops-promote-data-") as (path, version):
        dataset = path if version else args.dataset
        report = promote_gated(args.name, args.candidate, dataset, args.out, args.store, args.alias, args.ap_tolerance,
                               ",".join(args.latency_budget))
    print((Path(args.out) / "promotion.md").read_text())
    print(f"{args.name}:{args.alias} -> {report['candidate']} (was {report['production']})")


def add_commands(sub) -> None:
    zoo = sub.add_parser("zoo", help="model zoo commands").add_subparsers(dest="zoo_command", required=True)
    s = zoo.add_parser("ls", help="list committed model versions")
    s.add_argument("name", nargs="?", help="only this model")
    s.set_defaults(func=lambda a: list_versions("models", a))
    s = zoo.add_parser("show", help="a model version's lineage, files and aliases")
    s.add_argument("ref", help="NAME@VERSION or NAME@ALIAS")
    s.set_defaults(func=lambda a: show_version("models", a))
    s = zoo.add_parser("promote", help="point an alias (candidate, production, ...) at a version")
    s.add_argument("name", help="the zoo model's name")
    s.add_argument("version", help="the version to promote: its id, or an alias it holds (e.g. candidate)")
    s.add_argument("alias", help="the alias to point at it")
    s.add_argument("--force", action="store_true", help="promote although the version's deploy gates failed "
                   "(recorded with who, when and --reason)")
    s.add_argument("--reason", help="with --force: why (kept in the alias record and its history)")
    s.set_defaults(func=cmd_promote)
    for parser in zoo.choices.values():
        store_arg(parser)

    s = sub.add_parser("promote", help="gated promotion: evaluate a candidate and production on one dataset version; "
                       "move the alias only when every gate passes (exit 4 with the report otherwise)")
    s.add_argument("name", help="the zoo model's name")
    s.add_argument("out", help="directory for promotion.json and promotion.md")
    s.add_argument("--dataset", required=True, help="NAME@VERSION in the store, or a converted dataset directory")
    s.add_argument("--candidate", default="candidate", help="the version or alias to promote")
    s.add_argument("--alias", default="production")
    s.add_argument("--ap-tolerance", type=float, default=1.0, help="largest per-class AP@0.5 drop allowed, in points")
    s.add_argument("--latency-budget", action="append", default=[], metavar="BACKEND:PRECISION=MS",
                   help="p50 budget at batch 1 from the candidate's benchmark (repeatable)")
    store_arg(s)
    s.set_defaults(func=cmd_gated_promote)
