"""Register a finished model in the zoo: one immutable version holding the checkpoint, config, metrics,
the exported ONNX model, the deploy gates and the benchmark (when the pipeline exported and benchmarked it),
with its lineage; then point an alias (``candidate``) at it for the deploy targets whose gates passed: a target that
failed its gate is blocked (named in the alias record and the result), and the alias is not set when no target
passed or the gates are not meaningful (PyTorch below the metric's floor; a model that was not exported has no
gates: it is aliased)."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from admlops import zoo
from admlops.backends.parity import deploy_gates
from admlops.objectstore import open_store


def register(
    model_dir: str | Path,
    eval_dir: str | Path,
    onnx_dir: str | Path | None,
    bench_dir: str | Path | None,
    dataset: dict,
    name: str,
    run_id: str = "",
    parent: str = "",
    alias: str = "candidate",
    store_uri: str = "",
    study_dir: str | Path | None = None,
    engines_dir: str | Path | None = None,
) -> dict:
    """Publish and alias; ``dataset`` is the dataset's version record (the lineage). ``onnx_dir`` and ``bench_dir``
    (export's and benchmark's outputs) may be None for a model not exported. ``parent``: the parent model in the
    lineage; empty: the model training started from (train's init_from.json), if any; a distilled model's lineage
    names its teacher (distill.json). ``study_dir``: tune's output
    when the model is a study's best: its study.db and study.json are kept under study/ and the lineage names the
    study (its trials, the best trial and the metric). Returns the zoo record."""
    store = open_store(store_uri)
    model_dir = Path(model_dir)
    init = model_dir / "init_from.json"
    parent = parent or (json.loads(init.read_text())["model"] if init.is_file() else "")
    files = [(model_dir / "model.pth", "model.pth"), (model_dir / "config.py", "config.py"),
             (model_dir / "train_log.json", "metrics/train_log.json"), (Path(eval_dir) / "metrics.json", "metrics/pytorch.json")]
    files += [(init, "metrics/init_from.json")] if init.is_file() else []
    files += [(model_dir / f, f"metrics/{f}") for f in ("prune.json", "distill.json") if (model_dir / f).is_file()]
    if onnx_dir is not None:
        onnx_dir = Path(onnx_dir)
        files += [(onnx_dir / "metrics.json", "metrics/onnx.json"), (onnx_dir / "end2end.onnx", "onnx/end2end.onnx"),
                  (onnx_dir / "deploy.py", "onnx/deploy.py")]
    if bench_dir is not None:
        files.append((Path(bench_dir) / "benchmark.json", "metrics/benchmark.json"))
    study = json.loads((Path(study_dir) / "study.json").read_text()) if study_dir is not None else None
    if study_dir is not None:
        files += [(Path(study_dir) / f, f"study/{f}") for f in ("study.db", "study.json")]
    with tempfile.TemporaryDirectory(prefix="admlops-register-") as tmp:
        stage = Path(tmp)
        for src, dst in files:
            (stage / dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, stage / dst)
        gates = deploy_gates(onnx_dir, engines_dir)
        if gates:
            (stage / "metrics" / "gates.json").write_text(json.dumps(gates, indent=2))
        record = zoo.lineage(dataset, stage / "config.py", run_id=run_id, parent=parent)
        if (model_dir / "distill.json").is_file():  # the teacher that guided its training
            distilled = json.loads((model_dir / "distill.json").read_text())
            record["teacher"] = {"model": distilled["teacher"], "sha256": distilled["teacher_sha256"]}
        if study:
            record["study"] = {"name": study["study"], "trials": len(study["trials"]), "best": study["best"],
                               "metric": study["metric"]}
        version = zoo.publish(store, name, stage, record, gates=gates)
    failed = zoo.failed_gates({"gates": gates})
    deployable = zoo.deployable_targets({"gates": gates})
    if failed and alias:
        what = f"{alias} blocked for the targets whose gates failed" if deployable else f"not aliased {alias}"
        print(f"{name}@{version.version}: {what}: {'; '.join(failed)}", file=sys.stderr)
    aliased = alias and (deployable or not (gates or {}).get("gates"))  # no export (or no target): no gate blocks
    promoted = zoo.promote(store, name, version.version, alias, per_target=True) if aliased else None
    return {"name": name, "version": version.version, "uri": store.uri(f"models/{name}/{version.version}/"),
            "lineage": record, "gates_passed": not failed, "failed_gates": failed,
            "deployable_targets": deployable, "alias": promoted}
