"""``admlops iterate ...``: the return path of the loop, one command per step — infer over an unlabeled pool,
score, select under a label budget, report, export a labeling task, import the returned labels, merge them
into a new dataset version. The ``iterate`` pipeline chains the same functions."""
from __future__ import annotations

from admlops.pipelines.cli.common import print_json, store_arg


def cmd_infer(args) -> None:
    from admlops.components.iterate.infer import infer

    print_json(infer(args.model, args.pool, args.out, args.reference, args.store, args.batch_size, args.score_thr,
                     flip=not args.no_flip))


def cmd_score(args) -> None:
    from admlops.components.iterate.score import score

    print_json(score(args.predictions, args.dataset, args.out, args.signals.split(",") if args.signals else None))


def cmd_select(args) -> None:
    from admlops.components.iterate.select import select

    print_json(select(args.predictions, args.scores, args.out, args.budget, diversity=args.diversity,
                      budget_boxes=args.budget_boxes, targets=args.target_class, weights=args.weight))


def cmd_report(args) -> None:
    from admlops.components.iterate.report import report

    print_json(report(args.predictions, args.scores, args.selection, args.out))


def cmd_export_task(args) -> None:
    from admlops.components.iterate.task import export_task

    print_json(export_task(args.selection, args.predictions, args.out, args.format, args.definition))


def cmd_import(args) -> None:
    from admlops.components.iterate.task import import_labels

    print_json(import_labels(args.task, args.returned, args.out))


def cmd_merge(args) -> None:
    from admlops.components.iterate.merge import merge

    print_json(merge(args.labels, args.parent, args.out, args.store, args.name))


def add_commands(sub) -> None:
    from admlops.components.iterate.formats import FORMATS

    it = sub.add_parser("iterate", help="close the loop: mine corner cases, label them, merge them back").add_subparsers(
        dest="iterate_command", required=True)
    s = it.add_parser("infer", help="run a model over an unlabeled pool (with flipped-input predictions and embeddings)")
    s.add_argument("model", help="train's output directory, or a zoo model NAME@VERSION / NAME@ALIAS")
    s.add_argument("pool", help="a folder of images, or a converted dataset")
    s.add_argument("out", help="output directory (predictions.jsonl, embeddings)")
    s.add_argument("--reference", help="the current dataset (convert's output): embedded for the novelty signal")
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--score-thr", type=float, default=0.005, help="keep boxes down to this score (uncertainty needs them)")
    s.add_argument("--no-flip", action="store_true", help="skip the flipped-input pass (no disagreement signal)")
    store_arg(s)
    s.set_defaults(func=cmd_infer)
    s = it.add_parser("score", help="every selection signal on every pool frame")
    s.add_argument("predictions", help="infer's output")
    s.add_argument("dataset", help="the current dataset (class frequencies, embeddings)")
    s.add_argument("out")
    s.add_argument("--signals", help="comma-separated signal names (default: all)")
    s.set_defaults(func=cmd_score)
    s = it.add_parser("select", help="choose frames for labeling under a budget, diversity-aware, with reasons")
    s.add_argument("predictions")
    s.add_argument("scores", help="score's output")
    s.add_argument("out")
    s.add_argument("--budget", type=int, help="frames to label (1 .. pool size)")
    s.add_argument("--budget-boxes", type=int, help="predicted boxes to label, the vendor's unit (frames are added "
                   "while their boxes fit); with --budget, both limits hold; one of the two is required")
    s.add_argument("--target-class", action="append", metavar="CLASS[=SHARE]",
                   help="a class of the dataset definition the team wants more of, and its wanted share of the chosen "
                   "boxes in (0, 1] (default 1: as many as the budget buys); repeatable")
    s.add_argument("--weight", action="append", metavar="SIGNAL=WEIGHT",
                   help="a signal's weight in the combined score (default 1 each): the conditions the team wants more "
                   "of, e.g. novelty=3 (scenes unlike the dataset's) or flip=0; repeatable")
    s.add_argument("--diversity", type=float, default=0.5, help="penalty weight for frames like those already chosen")
    s.set_defaults(func=cmd_select)
    s = it.add_parser("report", help="the corner-case report: thumbnails with boxes, score distributions, counts")
    s.add_argument("predictions")
    s.add_argument("scores")
    s.add_argument("selection", help="select's output")
    s.add_argument("out")
    s.set_defaults(func=cmd_report)
    s = it.add_parser("export-task", help="a labeling task of the selection, pre-annotated with the model's boxes")
    s.add_argument("selection")
    s.add_argument("predictions")
    s.add_argument("out")
    s.add_argument("--format", required=True, choices=sorted(FORMATS), help="CVAT for images 1.1 or Label Studio JSON")
    s.add_argument("--definition", help="dataset definition whose labeling standard the task carries (default: the "
                   "current dataset's)")
    s.set_defaults(func=cmd_export_task)
    s = it.add_parser("import", help="check the vendor's returned labels against the task and its labeling standard")
    s.add_argument("task", help="export-task's output")
    s.add_argument("returned", help="the returned CVAT XML or Label Studio JSON")
    s.add_argument("out")
    s.set_defaults(func=cmd_import)
    s = it.add_parser("merge", help="imported labels + the parent dataset version -> a new immutable version")
    s.add_argument("labels", help="import's output")
    s.add_argument("parent", help="the parent dataset: NAME@VERSION in the store, or a dataset directory")
    s.add_argument("out")
    s.add_argument("--name", help="the new version's dataset name (default: the parent's)")
    store_arg(s)
    s.set_defaults(func=cmd_merge)
