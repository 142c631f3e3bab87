"""The pipelines this project ships, by name. Compiled YAML lives beside this file as <name>.yaml; a cluster
profile's variant compiles to <name>-<profile>.yaml."""
from pathlib import Path

from admlops.pipelines import detection2d as _detection2d
from admlops.pipelines.profiles import load_profile

BUILDERS = {"detection2d": _detection2d.build}
PIPELINES = {"detection2d": _detection2d.detection2d}
PIPELINE_DIR = Path(__file__).resolve().parent


def compile_pipeline(name: str, out_dir: str | Path = PIPELINE_DIR, profile: str | None = None) -> Path:
    from kfp import compiler

    func = BUILDERS[name](load_profile(profile)) if profile else PIPELINES[name]
    path = Path(out_dir) / (f"{name}-{load_profile(profile).name}.yaml" if profile else f"{name}.yaml")
    compiler.Compiler().compile(func, str(path))
    return path
