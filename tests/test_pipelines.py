"""The committed pipeline YAML is what the code compiles to (CI fails on drift)."""
import re

import pytest
import yaml

from admlops.images import IMAGES
from admlops.pipelines.registry import PIPELINE_DIR, PIPELINES, compile_pipeline


def _normalized(text: str) -> str:
    return re.sub(r"(?m)^.*sdkVersion:.*$", "", text)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_compiled_yaml_is_up_to_date(name, tmp_path):
    fresh = compile_pipeline(name, tmp_path).read_text()
    committed = (PIPELINE_DIR / f"{name}.yaml").read_text()
    assert _normalized(fresh) == _normalized(committed), f"pipelines/{name}.yaml is stale: run `admlops compile`"


def test_detection2d_shape():
    spec = yaml.safe_load((PIPELINE_DIR / "detection2d.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    loop = "for-loop-1"  # the conversion's shards (tests/test_shards.py)
    assert set(tasks) == {"shard-plan", loop, "convert", "analyze", "train", "evaluate", "export", "benchmark", "register"}
    assert tasks["convert"]["inputs"]["artifacts"]["parts"]["taskOutputArtifact"]["producerTask"] == loop
    assert tasks["train"]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]["producerTask"] == "convert"
    assert tasks["benchmark"]["inputs"]["artifacts"]["onnx_model"]["taskOutputArtifact"]["producerTask"] == "export"
    outputs = {name: comp.get("outputDefinitions", {}).get("artifacts", {}) for name, comp in spec["components"].items()}
    assert outputs["comp-evaluate"]["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["comp-benchmark"]["table"]["artifactType"]["schemaTitle"] == "system.Markdown"
    assert outputs["comp-train"]["model"]["artifactType"]["schemaTitle"] == "system.Model"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images <= set(IMAGES.values())


@pytest.mark.parametrize("name", ["detection2d", "detection3d"])
def test_a_failed_gate_ends_the_run_only_when_asked(name):
    """The export's enforce_gates is the pipeline's deploy_gates_fatal, off by default: a target over its allowance
    is recorded and the run goes on to benchmark and register (a CI promotion run sets it)."""
    spec = yaml.safe_load((PIPELINE_DIR / f"{name}.yaml").read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["deploy_gates_fatal"] == {"defaultValue": False, "isOptional": True, "parameterType": "BOOLEAN"}
    dag = next(c["dag"]["tasks"] for c in [spec["root"], *spec["components"].values()]
               if "export" in c.get("dag", {}).get("tasks", {}))  # detection3d: inside the KITTI branch
    wired = dag["export"]["inputs"]["parameters"]["enforce_gates"]
    assert wired == {"componentInputParameter": "pipelinechannel--deploy_gates_fatal"} or \
        wired == {"componentInputParameter": "deploy_gates_fatal"}


def _is_literal(node) -> bool:
    """A constant, a negative number included (``-1.0`` parses as a unary minus on a constant)."""
    import ast

    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        return False


def test_components_are_self_contained():
    """KFP runs a component's function body alone: module-level imports beyond kfp and admlops.images would make
    compiling need the heavy stack, and a default naming a module constant fails at run time (NameError)."""
    import ast
    from pathlib import Path

    for path in sorted(Path(PIPELINE_DIR).parent.glob("components/*/component.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                # typing: KFP itself prepends `from typing import *` to every component body
                assert module in ("kfp", "kfp.dsl", "admlops.images", "typing"), f"{path}: top-level import of {module}"
            if isinstance(node, ast.FunctionDef):
                for default in node.args.defaults + node.args.kw_defaults:
                    assert default is None or _is_literal(default), \
                        f"{path}:{default.lineno}: {node.name}'s default must be a literal"
