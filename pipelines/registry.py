"""The pipelines this project ships, by name, and the one check of their parameters. Compiled YAML lives beside
this file as <name>.yaml; a cluster profile's variant compiles to <name>-<profile>.yaml."""
from __future__ import annotations

import sys
from pathlib import Path

from admlops.errors import UsageError
from admlops.pipelines import collect as _collect
from admlops.pipelines import detection2d as _detection2d
from admlops.pipelines import detection3d as _detection3d
from admlops.pipelines import distill as _distill
from admlops.pipelines import iterate as _iterate
from admlops.pipelines import optimize as _optimize
from admlops.pipelines import promote as _promote
from admlops.pipelines import qat as _qat
from admlops.pipelines import tune as _tune
from admlops.pipelines.profiles import load_profile

BUILDERS = {"collect": _collect.build, "detection2d": _detection2d.build, "detection3d": _detection3d.build, "distill": _distill.build,
            "iterate": _iterate.build,
            "optimize": _optimize.build, "promote": _promote.build, "qat": _qat.build, "tune": _tune.build}
# checks of a run's inputs before its first step
PREFLIGHTS = {"detection3d": _detection3d.preflight, "iterate": _iterate.preflight, "collect": _iterate.preflight}
PIPELINES = {name: build() for name, build in BUILDERS.items()}
PIPELINE_DIR = Path(__file__).resolve().parent
# Renamed parameters, old -> new: the old name is still taken, with a warning, until the release after 0.1 (scripts and
# CI jobs that pass it keep working; a compiled pipeline on a cluster takes only the names its YAML declares).
RENAMED_PARAMS = {"kitti_root": "source"}
_CASTS = {"Integer": int, "Float": float, "Boolean": lambda v: v.lower() in ("1", "true", "yes"), "String": str,
          "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": lambda v: v.lower() in ("1", "true", "yes")}


def pipeline(name: str):
    """The pipeline function called ``name``; an unknown name is a usage error listing the shipped ones."""
    if name not in PIPELINES:
        raise UsageError(f"unknown pipeline {name!r}: expected one of {', '.join(sorted(PIPELINES))}")
    return PIPELINES[name]


def parse_params(name: str, pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings into pipeline ``name``'s typed parameters (a usage error names a bad pair)."""
    inputs = pipeline(name).component_spec.inputs or {}
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = renamed(key) if key not in inputs else key
        if not sep or key not in inputs:
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE with KEY one of {', '.join(inputs)}")
        try:
            params[key] = _CASTS.get(inputs[key].type, str)(value)
        except ValueError:
            raise UsageError(f"--param {pair!r}: expected a {inputs[key].type}") from None
    return params


def renamed(key: str) -> str:
    """A parameter's current name; an old one (RENAMED_PARAMS) warns on stderr."""
    if key in RENAMED_PARAMS:
        print(f"admlops: warning: parameter {key} is now {RENAMED_PARAMS[key]}; the old name is taken until the next "
              f"release", file=sys.stderr)
    return RENAMED_PARAMS.get(key, key)


def check_params(name: str, params: dict) -> None:
    """Every parameter is one of pipeline ``name``'s and every required one is given."""
    inputs = pipeline(name).component_spec.inputs or {}
    unknown = sorted(set(params) - set(inputs))
    missing = sorted(k for k, spec in inputs.items() if not spec.optional and k not in params)
    if unknown or missing:
        raise UsageError(f"pipeline {name}: " + "; ".join(
            [f"unknown parameters {unknown} (expected some of {', '.join(inputs)})"] * bool(unknown)
            + [f"missing required parameters {missing}"] * bool(missing)))


def preflight(name: str, params: dict) -> None:
    """Run pipeline ``name``'s input checks (if it has them) on ``params`` with its defaults filled in: bad input
    fails as a usage (2) or input (3) error before any step has run, not as a failed step (4) minutes later."""
    check_params(name, params)
    if check := PREFLIGHTS.get(name):
        inputs = pipeline(name).component_spec.inputs or {}
        check({k: spec.default for k, spec in inputs.items() if spec.optional} | params)


def compile_pipeline(name: str, out_dir: str | Path = PIPELINE_DIR, profile: str | None = None) -> Path:
    from kfp import compiler

    func = BUILDERS[name](load_profile(profile)) if profile else pipeline(name)
    path = Path(out_dir) / (f"{name}-{load_profile(profile).name}.yaml" if profile else f"{name}.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(func, str(path))
    return path
