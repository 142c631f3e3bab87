"""The pipelines this project ships, by name. Compiled YAML lives beside this file as <name>.yaml."""
from pathlib import Path

from admlops.pipelines.detection2d import detection2d

PIPELINES = {"detection2d": detection2d}
PIPELINE_DIR = Path(__file__).resolve().parent


def compile_pipeline(name: str, out_dir: str | Path = PIPELINE_DIR) -> Path:
    from kfp import compiler

    path = Path(out_dir) / f"{name}.yaml"
    compiler.Compiler().compile(PIPELINES[name], str(path))
    return path
