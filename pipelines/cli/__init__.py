"""``admlops``: every lifecycle step as a command, plus compiling and running the pipelines.

Exit codes: 0 success; 1 an unexpected failure (a bug or an environment problem: see the traceback);
2 a usage error; 3 bad input data (the message names the file and line); 4 a pipeline task or a gate failed
(its log or report says why); 5 a storage error (the message names the store and object); 6 a remote service
(the KFP API, Kubernetes) refused or could not be reached; 130 interrupted.

One module per command group (data, zoo, models, iterate, pipelines) over the helpers in ``common``; the product's
errors (admlops.errors.AdmlopsError) carry their exit code and are mapped here, in one place.
"""
from __future__ import annotations

import argparse
import sys

from admlops.errors import AdmlopsError
from admlops.pipelines.cli import data, iterate, models, pipelines, zoo

GROUPS = (data, zoo, models, iterate, pipelines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="admlops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
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
