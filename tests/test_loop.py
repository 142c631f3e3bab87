"""One whole round of the closed loop through the pipelines themselves (kfp.local, one store): iterate (mine,
task, the labels back, merge) -> detection2d on the merged version -> promote; then the lineage chain from the
new production model back to the pool, the selection and the original dataset."""
import shutil
from pathlib import Path

from admlops import catalog, zoo
from admlops.components.convert.lake import COCO_ROLES
from admlops.objectstore import open_store
from conftest import admlops
from test_iterate import ground_truth, vendor_cvat


def _run(run_store, pipeline, **params):
    """``admlops run PIPELINE --local`` with its run artifacts under ``run_store``; ``params`` are the pipeline's
    (``store`` among them: the lake and zoo the steps read and write)."""
    args = ["run", pipeline, "--local", "--store", run_store]
    for k, v in params.items():
        args += ["--param", f"{k}={v}"]
    res = admlops(*args)
    (run_line,) = [l for l in res.stdout.splitlines() if l.startswith("run: ")]
    return res, Path(run_line.removeprefix("run: "))


def test_a_whole_round_and_its_lineage(learned_model, tmp_path):
    store_dir = str(tmp_path / "store")
    store = open_store(store_dir)
    original = catalog.push(store, "datasets", "kitti-coco", learned_model.dataset, roles=COCO_ROLES)
    model = tmp_path / "model"
    shutil.copytree(learned_model.model, model, ignore=shutil.ignore_patterns("work"))
    gates = {"passed": True, "gates": []}
    first = zoo.publish(store, "det", model, zoo.lineage(original.ref(), model / "config.py"), gates=gates)
    zoo.promote(store, "det", first.version, "production")
    admlops("data", "synth", "kitti", "--frames", 8, "--seed", 11, "--out", tmp_path / "pool-kitti")
    admlops("data", "convert", "--strict", tmp_path / "pool-kitti", tmp_path / "pool")
    common = dict(model="det@production", pool=tmp_path / "pool", dataset=f"kitti-coco@{original.version}", budget=3,
                  store=store_dir, label_format="cvat")

    res, mined = _run(store_dir, "iterate", **common)
    assert "merge" not in res.stdout  # no labels yet: the pipeline stops at the task
    task = mined / "export-task" / "task"
    returned = vendor_cvat(task, ground_truth(tmp_path / "pool"), tmp_path / "returned.xml")
    res, merged_run = _run(store_dir, "iterate", **common, returned=returned, merged_name="kitti-coco")
    assert (merged_run / "merge" / "dataset" / "summary.json").is_file()
    versions = [v for n, v in catalog.list_versions(store, "datasets", "kitti-coco") if v != original.version]
    (merged,) = versions
    merged_info = catalog.show(store, "datasets", "kitti-coco", merged).info

    _run(store_dir, "detection2d", source=f"kitti-coco@{merged}", store=store_dir, train_max_iters=2,
         train_batch_size=2, deploy_backends="onnxruntime:fp32", bench_batch_sizes="1", bench_max_images=2,
         bench_warmup=0, zoo_model_name="det", zoo_alias="candidate",
         deploy_gate_floor=0.0)  # the chain is under test: a 2-iteration model passes no real floor
    admlops("promote", "det", tmp_path / "promotion", "--dataset", f"kitti-coco@{merged}", "--store", store_dir,
            "--ap-tolerance", "100")  # the chain is under test here, not the 2-iteration model's quality

    production = zoo.aliases(store, "det")["production"]["version"]
    assert production != first.version
    lineage = catalog.show(store, "models", "det", production).info["lineage"]
    assert lineage["dataset"]["name"] == "kitti-coco" and lineage["dataset"]["version"] == merged
    # the round's retraining started from the model that mined it (train_init_from "auto"), its parent in the zoo
    assert lineage["parent_model"] == f"det@{first.version}"
    parent = merged_info["lineage"]
    assert parent["parent"] == original.ref()
    assert parent["model"]["name"] == "det" and parent["model"]["version"] == first.version
    assert parent["pool"]["name"] == "pool" and len(parent["selection"]["frames"]) == 3
    assert all(f["reason"] for f in parent["selection"]["frames"]) and parent["task"]["format"] == "cvat"
