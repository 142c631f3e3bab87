"""The detection3d pipeline (pipelines/detection3d.py): its compiled shape and parameters, the checks that fail a
run before its first step, ``--cfg-options``, and one kfp.local run end to end (infos -> train -> evaluate ->
register) on the session's synthetic KITTI, with a two-iteration PointPillars."""
import hashlib
import json
import os
import re

import pytest
import yaml

from admlops import catalog, images
from admlops.components.convert.lake import KITTI_ROLES
from admlops.errors import InputError, UsageError
from admlops.objectstore import open_store
from admlops.pipelines.cli import main
from admlops.pipelines.registry import compile_pipeline, parse_params

CLASSES = ("Pedestrian", "Cyclist", "Car")
KINDS = ("3D", "BEV", "2D")
# val_interval past max_iters: train skips its closing validation, which the evaluate step repeats
CFG_OPTIONS = "model.test_cfg.score_thr=0.05 default_hooks.logger.interval=1 train_cfg.val_interval=100"


def _tasks(spec: dict) -> dict:
    """Every task by display name, the ones inside the export condition's branches too (condition tasks left out)."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {t["taskInfo"]["name"] + ("-else" if key == "register-2" else ""): t
            for dag in dags for key, t in dag["tasks"].items() if not key.startswith("condition")}


def _producer(task: dict, artifact: str) -> str:
    """The task an input artifact comes from (inside a condition's branch it arrives as a pipeline channel)."""
    source = task["inputs"]["artifacts"][artifact]
    if "taskOutputArtifact" in source:
        return source["taskOutputArtifact"]["producerTask"]
    return re.fullmatch(r"pipelinechannel--(.+)-[a-z_]+", source["componentInputArtifact"])[1]


def test_compiled_shape(tmp_path):
    spec = yaml.safe_load(compile_pipeline("detection3d", tmp_path).read_text())
    tasks = _tasks(spec)
    assert set(tasks) == {"infos-plan", "for-loop-1", "infos-shard", "infos", "train", "evaluate", "export",
                          "benchmark", "register", "register-else"}  # the infos in shards: tests/test_shards.py
    for task, producer in (("train", "infos"), ("evaluate", "train"), ("export", "train"), ("register", "train"),
                           ("register-else", "train")):
        artifact = "model" if task != "train" else "dataset"
        assert _producer(tasks[task], artifact) == producer, task
    assert _producer(tasks["register"], "report") == "evaluate" and _producer(tasks["register"], "onnx_model") == "export"
    assert "onnx_model" not in tasks["register-else"]["inputs"]["artifacts"]  # nuScenes: not exported, no gates
    train = tasks["train"]["inputs"]["parameters"]
    assert train["cfg_options"]["componentInputParameter"] == "train_cfg_options"
    assert train["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    outputs = spec["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["markdown"]["artifactType"]["schemaTitle"] == "system.Markdown"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["train_config"]["defaultValue"] == "pointpillars_kitti_cpu"
    assert params["zoo_model_name"]["defaultValue"] == "pointpillars-kitti"
    assert "defaultValue" not in params["source"]


def test_profile_puts_train_and_evaluate_on_gpus(tmp_path):
    spec = next(yaml.safe_load_all(compile_pipeline("detection3d", tmp_path, "a100").read_text()))
    for name, task in _tasks(spec).items():
        if name.startswith("for-loop"):  # the infos shards' loop: its task is checked as infos-shard
            continue
        container = spec["deploymentSpec"]["executors"][task["componentRef"]["name"].replace("comp-", "exec-")]["container"]
        gpu = name in ("train", "evaluate")
        assert container["image"] == images.image_for(name.removesuffix("-else"), gpu=gpu), name
        assert ("accelerator" in container.get("resources", {})) is gpu, name


def test_parameters_are_typed_and_checked():
    params = parse_params("detection3d", ["source=/data/kitti", "train_max_iters=3", f"train_cfg_options={CFG_OPTIONS}"])
    assert params == {"source": "/data/kitti", "train_max_iters": 3, "train_cfg_options": CFG_OPTIONS}
    with pytest.raises(UsageError, match="train_max_iters=three.*Integer"):
        parse_params("detection3d", ["train_max_iters=three"])
    with pytest.raises(UsageError, match="KEY one of source"):
        parse_params("detection3d", ["kiti_root=/data"])


def test_cfg_options_are_parsed_as_dictaction_does():
    from admlops.mmconfig import parse_cfg_options

    parsed = parse_cfg_options("a.b=1 c=0.5 d=true e=None f=x,y g=[1,(2,3)] h='a b' i=1e-3")  # DictAction drops spaces
    assert parsed == {"a.b": 1, "c": 0.5, "d": True, "e": None, "f": ["x", "y"], "g": [1, (2, 3)], "h": "ab",
                      "i": 0.001}
    assert parse_cfg_options(["a=1", "a=2"]) == {"a": 2} and parse_cfg_options("") == {} == parse_cfg_options(None)
    for bad, message in (("score_thr", "expected KEY=VALUE"), ("=1", "expected KEY=VALUE"), ("a=[1,2", "Imbalanced"),
                         ("a='1", "No closing quotation")):
        with pytest.raises(UsageError, match=message):
            parse_cfg_options(bad)


def test_cfg_options_must_name_what_the_config_has():
    from mmengine.config import Config

    from admlops.mmconfig import merge_cfg_options, parse_cfg_options
    from admlops.configs import resolve

    cfg = Config.fromfile(str(resolve("models", "pointpillars_kitti_cpu")))
    merge_cfg_options(cfg, parse_cfg_options("model.test_cfg.score_thr=0.3 train_dataloader.dataset.dataset.pipeline.3"
                                             ".flip_ratio_bev_horizontal=0.0 optim_wrapper.optimizer.lr=1e-3"))
    assert cfg.model.test_cfg.score_thr == 0.3 and cfg.optim_wrapper.optimizer.lr == 0.001
    assert cfg.train_dataloader.dataset.dataset.pipeline[3].flip_ratio_bev_horizontal == 0.0
    for option, message in (("model.test_cfg.scor_thr=0.3", "model.test_cfg has no 'scor_thr' \\(it has .*score_thr"),
                            ("train_cfg.max_iters=many", "expected a number like the config's 200"),
                            ("model.backbone.layer_nums.7=1", "model.backbone.layer_nums has no '7'"),
                            ("modle.neck=None", "the config has no 'modle'")):
        with pytest.raises(UsageError, match=message):
            merge_cfg_options(cfg, parse_cfg_options(option))


@pytest.fixture
def no_velodyne(kitti_root, tmp_path):
    """The session's KITTI without its Velodyne scans (the other folders linked)."""
    root = tmp_path / "no-velodyne"
    (root / "training").mkdir(parents=True)
    for sub in ("image_2", "label_2", "calib"):
        os.symlink(kitti_root / "training" / sub, root / "training" / sub)
    os.symlink(kitti_root / "ImageSets", root / "ImageSets")
    return root


def test_bad_input_fails_before_the_first_step(no_velodyne, kitti_root, tmp_path, capsys):
    run = ["run", "detection3d", "--local", "--store", str(tmp_path / "store")]
    assert main(run + ["--param", f"source={no_velodyne}"]) == 3
    assert f"{no_velodyne / 'training' / 'velodyne'}: directory missing" in capsys.readouterr().err
    assert main(run + ["--param", f"source={kitti_root}", "--param", "train_config=pointpilars_kitti_cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown model config 'pointpilars_kitti_cpu'" in err and "pointpillars_kitti_cpu" in err
    assert main(run + ["--param", f"source={kitti_root}", "--param", "train_cfg_options=model.test_cfg.nms=1"]) == 2
    assert "--cfg-options model.test_cfg.nms=1: model.test_cfg has no 'nms'" in capsys.readouterr().err
    assert main(run + ["--param", f"source={kitti_root}", "--param", "deploy_backends=openvino:int8"]) == 2
    assert "openvino:int8 are not available for a 3D voxel detector" in capsys.readouterr().err
    assert main(run + ["--param", f"source={kitti_root}", "--param", "deploy_backends=onnxruntime:fp16"]) == 2
    assert "backend 'onnxruntime' has no precision 'fp16'" in capsys.readouterr().err
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())


def test_infos_step_names_the_missing_scan_and_publishes_nothing(no_velodyne, tmp_path):
    from admlops.components.infos.infos import write_infos

    store = tmp_path / "store"
    with pytest.raises(InputError, match="missing Velodyne scan") as err:
        write_infos(str(no_velodyne), tmp_path / "root", store_uri=str(store), workers=1)
    assert re.search(r"/training/velodyne/\d{6}\.bin$", err.value.path)
    assert not (tmp_path / "root").exists() and not catalog.list_versions(open_store(store), "datasets")
    with pytest.raises(UsageError, match="data_format 'las': expected one of kitti, nuscenes"):
        write_infos(str(no_velodyne), tmp_path / "root", "las", store_uri=str(store))


def test_infos_step_takes_nuscenes(nuscenes_root, tmp_path):
    from admlops.components.infos.infos import write_infos

    store = tmp_path / "store"
    summary = write_infos(str(nuscenes_root), tmp_path / "root", "nuscenes", str(store), "v1.0-mini", max_sweeps=2,
                          workers=1)
    assert summary["format"] == "nuscenes" and sum(summary["frames"].values()) == 8
    root = tmp_path / "root"
    assert (root / "nuscenes_infos_train.pkl").is_file() and (root / "v1.0-mini" / "sample.json").is_file()
    assert not [p for p in root.rglob("*") if p.is_symlink()]
    source = summary["source_version"]
    assert catalog.list_versions(open_store(store), "datasets") == [(source["name"], source["version"])]


@pytest.fixture(scope="module")
def run(kitti_root, tmp_path_factory):
    """One local run; returns (run directory, store, console output)."""
    import contextlib
    import io

    store = tmp_path_factory.mktemp("store3d")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", "detection3d", "--local", "--store", str(store), "--param", f"source={kitti_root}",
                     "--param", "train_max_iters=2", "--param", "train_batch_size=2",
                     "--param", f"train_cfg_options={CFG_OPTIONS}"])
    assert code == 0, out.getvalue()[-3000:]
    (run_dir,) = (store / "runs").iterdir()
    return run_dir, store, out.getvalue()


def _output_metadata(run_dir, task: str, output: str) -> dict:
    return json.loads((run_dir / task / "executor_output.json").read_text())["artifacts"][output]["artifacts"][0]["metadata"]


def test_run_writes_a_self_contained_data_root(run, kitti_root):
    run_dir, store, console = run
    steps = json.loads((run_dir / "steps.json").read_text())
    assert [s["task"] for s in steps] == ["shard-plan", "for-loop-1-iteration-0/infos-shard", "infos", "train",
                                          "evaluate", "export", "benchmark", "register"]
    root = run_dir / "infos" / "dataset"
    assert not [p for p in root.rglob("*") if p.is_symlink()]  # an artifact holds its files
    assert len(list((root / "training" / "velodyne").glob("*.bin"))) == 20
    summary = json.loads((root / "infos.json").read_text())
    assert summary["frames"] == {"train": 16, "val": 4, "trainval": 20}
    source = summary["source_version"]
    assert _output_metadata(run_dir, "infos", "dataset")["version"] == source
    assert catalog.show(open_store(store), "datasets", source["name"], source["version"]).manifest_sha256 == \
        source["manifest_sha256"] == catalog.push(open_store(store), "datasets", kitti_root.name, kitti_root, roles=KITTI_ROLES).manifest_sha256
    assert "data: 16 train / 4 val frames (kitti data root" in console


def test_run_trains_with_the_cfg_options(run):
    run_dir, _, _ = run
    config = (run_dir / "train" / "model" / "config.py").read_text()
    assert "score_thr=0.05" in config and "max_iters=2" in config and "val_interval=100" in config
    log = json.loads((run_dir / "train" / "model" / "train_log.json").read_text())
    assert [r["iter"] for r in log if "loss" in r] == [1, 2]  # logger interval 1, from the options


def test_evaluate_logs_kitti_metrics_and_a_report(run):
    run_dir, _, console = run
    report = json.loads((run_dir / "evaluate" / "report" / "metrics.json").read_text())
    assert set(report["per_class"]) == set(CLASSES)
    metrics = _output_metadata(run_dir, "evaluate", "metrics")
    assert set(metrics) == {f"{c}_{k}_AP40_moderate" for c in CLASSES for k in KINDS} | {f"mAP_{k}_AP40_moderate" for k in KINDS}
    for cls in CLASSES:
        for kind in KINDS:
            assert metrics[f"{cls}_{kind}_AP40_moderate"] == round(report["per_class"][cls][f"{kind}_AP40_moderate_strict"], 4)
    assert metrics["mAP_3D_AP40_moderate"] == round(report["overall"]["3D_AP40_moderate"], 4)

    rows = {}  # (table, class, metric) -> the six AP11/AP40 easy/moderate/hard cells
    table = None
    for line in (run_dir / "evaluate" / "markdown").read_text().splitlines():
        if line.startswith("## "):
            table = line.split()[1].lower()
        elif table and line.startswith("| ") and not line.startswith("| class"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[table, cells[0], cells[1]] = cells[2:]
    assert len(rows) == 2 * len(CLASSES) * len(KINDS) + len(KINDS)  # strict and loose; the means at strict
    for (iou, cls, kind), cells in rows.items():
        values = report["overall"] if cls == "mean" else report["per_class"][cls]
        suffix = "" if cls == "mean" else f"_{iou}"
        assert cells == [f"{values[f'{kind}_AP{r}_{d}{suffix}']:.2f}" for r in (11, 40) for d in ("easy", "moderate", "hard")]
    assert f"KITTI AP40 moderate Car        3D {metrics['Car_3D_AP40_moderate']:6.2f}" in console


def test_export_gates_and_benchmarks_both_onnx_runtime_targets(run):
    """The 3D defaults: ONNX Runtime fp32 (1.0 point allowed) and int8 (1.5), each gated on the class-mean 3D AP40
    moderate, printed in the run summary, and each that passed a row of the benchmark beside PyTorch (one that
    failed is listed as not deployable: whichever it is, the run went on)."""
    run_dir, _, console = run
    export_dir = run_dir / "export" / "onnx_model"
    gates = json.loads((export_dir / "gates.json").read_text())
    assert [(g["backend"], g["precision"], g["allowed_points"]) for g in gates["gates"]] == [
        ("onnxruntime", "fp32", 1.0), ("onnxruntime", "int8", 1.5)]
    metrics = json.loads((export_dir / "metrics.json").read_text())
    for g in gates["gates"]:
        tag = f"{g['backend']}-{g['precision']}"
        assert g["measured"] == metrics["backends"][tag]["headline"]["mAP_3D_AP40_moderate"]
        assert f"{tag:<18} mAP_3D_AP40_moderate {g['measured']:.2f}  (PyTorch {g['pytorch']:.2f}" in console
        verdict = "FAILED: not deployable" if not g["passed"] else "passed" if gates["floor"]["met"] else "not meaningful"
        assert f"gate {g['backend'] + ':' + g['precision']:<18} mAP_3D_AP40_moderate drop {g['drop_points']:+.2f}" in console
        assert verdict in console
    assert json.loads((export_dir / "onnxruntime-int8" / "build.json").read_text())["calibration"]["batches"] == 16
    bench = json.loads((run_dir / "benchmark" / "results" / "benchmark.json").read_text())
    assert {(r["runtime"], r["precision"]) for r in bench["rows"]} == {("pytorch", "fp32")} | {
        (g["backend"], g["precision"]) for g in gates["gates"] if g["passed"]}
    assert bench["not_deployable"] == [g for g in gates["gates"] if not g["passed"]]


def test_register_records_the_lineage(run):
    run_dir, store, console = run
    zoo_model = json.loads((run_dir / "register" / "zoo_model").read_text())
    assert zoo_model["name"] == "pointpillars-kitti"
    info = catalog.show(open_store(store), "models", "pointpillars-kitti", zoo_model["version"]).info
    lineage = info["lineage"]
    source = json.loads((run_dir / "infos" / "dataset" / "infos.json").read_text())["source_version"]
    assert lineage["dataset"] == {k: source[k] for k in ("name", "version", "manifest_sha256")}
    assert lineage["config_sha256"] == hashlib.sha256((run_dir / "train" / "model" / "config.py").read_bytes()).hexdigest()
    run_id = _output_metadata(run_dir, "train", "model")["run_id"]
    assert run_id and "{{" not in run_id and lineage["pipeline_run_id"] == run_id
    assert info["gates"]["passed"] is zoo_model["gates_passed"]  # the export's parity gates decide the alias
    passed = [f"{g['backend']}:{g['precision']}" for g in info["gates"]["gates"] if g["passed"]] \
        if info["gates"]["floor"]["met"] else []  # below the AP floor no target is deployable
    assert zoo_model["deployable_targets"] == passed
    assert (zoo_model["alias"] or {}).get("alias") == ("candidate" if passed else None)
    assert (zoo_model["alias"] or {}).get("targets", passed) == passed
    files = {r["path"] for r in catalog.read_manifest(open_store(store), "models", "pointpillars-kitti", zoo_model["version"])}
    assert {"model.pth", "config.py", "metrics/pytorch.json", "metrics/train_log.json"} <= files
    assert f"model zoo: pointpillars-kitti@{zoo_model['version']}" in console


def test_train_cli_rejects_a_bad_cfg_option_before_training(run, tmp_path, capsys):
    run_dir, _, _ = run
    args = ["train", str(run_dir / "infos" / "dataset"), str(tmp_path / "model"), "--config", "pointpillars_kitti_cpu"]
    assert main(args + ["--cfg-options", "model.test_cfg.score_thr"]) == 2
    assert "--cfg-options 'model.test_cfg.score_thr': expected KEY=VALUE" in capsys.readouterr().err
    assert main(args + ["--cfg-options", "model.test_cfg.score_thr=0.1", "model.tset_cfg.nms_thr=0.1"]) == 2
    assert "--cfg-options model.tset_cfg.nms_thr=0.1: model has no 'tset_cfg'" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
