"""Hyperparameter search (``admlops tune``, components/tune): the search space is checked against the config before
any trial; a study of real trainings records each trial (a failing one as failed, the study going on), keeps the
best model, reports it as HTML and registers it with the study in its lineage; the pruning hook reports the
intermediate validation and stops a trial the pruner rejects."""
from __future__ import annotations

import json

import pytest
from mmengine.config import Config

from admlops.configs import resolve
from admlops.errors import UsageError


def _config(tmp_path, space: str) -> str:
    path = tmp_path / "searched.py"
    path.write_text(f"_base_ = '{resolve('models', 'rtmdet_tiny_kitti')}'\nsearch_space = {{'_delete_': True, {space}}}\n")
    return str(path)


@pytest.mark.parametrize("space, message", [
    ("'optim_wrapper.optimizer.lrate': dict(type='float', low=0.001, high=0.01)", "has no 'lrate'"),
    ("'optim_wrapper.optimizer.lr': dict(type='float', low=0.01, high=0.01)", r"the range \[0.01, 0.01\] is empty"),
    ("'train_dataloader.batch_size': dict(type='categorical', choices=[])", "no choices"),
    ("'optim_wrapper.optimizer.lr': dict(type='uniform', low=0.001, high=0.01)", "type 'uniform'"),
    ("'optim_wrapper.optimizer.lr': dict(type='float', low=0, high=0.01, log=True)", "log range needs low > 0"),
])
def test_a_bad_search_space_is_refused_naming_the_key(tmp_path, space, message):
    from admlops.components.tune.tune import search_space

    with pytest.raises(UsageError, match=message):
        search_space(Config.fromfile(_config(tmp_path, space)))


def test_the_shipped_search_spaces_are_valid_and_a_config_without_one_is_refused(tmp_path):
    from admlops.components.tune.tune import search_space

    for name in ("rtmdet_tiny_kitti", "yolox_tiny_kitti", "faster_rcnn_r50_fpn_kitti_cpu", "yolov3_mobilenetv2_kitti"):
        assert "optim_wrapper.optimizer.lr" in search_space(Config.fromfile(str(resolve("models", name))))
    with pytest.raises(UsageError, match="declares no search_space"):
        search_space(Config.fromfile(str(resolve("models", "pointpillars_kitti_cpu"))))


def test_the_pruning_hook_reports_validation_and_stops_a_rejected_trial():
    import optuna

    from admlops.components.tune.tune import pruning_hook

    class Trial:
        def __init__(self, prune):
            self.reported, self.prune = [], prune

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return self.prune

    class Runner:
        iter = 40

    kept = Trial(False)
    pruning_hook(kept, "coco/bbox_mAP_50").after_val_epoch(Runner(), {"coco/bbox_mAP_50": 0.25, "coco/bbox_mAP": 0.1})
    assert kept.reported == [(40, 0.25)]
    with pytest.raises(optuna.TrialPruned, match="coco/bbox_mAP_50 0.1000 at iteration 40"):
        pruning_hook(Trial(True), "coco/bbox_mAP_50").after_val_epoch(Runner(), {"coco/bbox_mAP_50": 0.1})


def test_a_study_records_every_trial_keeps_the_best_and_registers_it(coco_dir, tmp_path):
    """Three trials of two iterations; TPE's seeded start draws batch size 0 (a DataLoader error), 2, 0: the failed
    trials are recorded with their error and the study goes on to the one that completes, whose model is the best."""
    from admlops import catalog
    from admlops.components.tune.tune import tune
    from admlops.objectstore import open_store

    config = _config(tmp_path, "'train_dataloader.batch_size': dict(type='categorical', choices=[2, 0]), "
                               "'optim_wrapper.optimizer.lr': dict(type='float', low=0.001, high=0.01, log=True)")
    out, store = tmp_path / "study", str(tmp_path / "store")
    result = tune(coco_dir, out, config, trials=3, max_iters=2, reports=1, seed=0, name="tuned", store=store)
    states = [t["state"] for t in result["trials"]]
    assert states == ["FAIL", "COMPLETE", "FAIL"], result["trials"]
    assert all("batch_size" in t["error"] for t in result["trials"] if t["state"] == "FAIL")
    assert result["best"]["number"] == 1 and result["best"]["params"]["train_dataloader.batch_size"] == 2
    best_cfg = Config.fromfile(str(out / "best" / "config.py"))
    assert best_cfg.train_dataloader.batch_size == 2
    assert best_cfg.optim_wrapper.optimizer.lr == pytest.approx(result["best"]["params"]["optim_wrapper.optimizer.lr"])
    assert json.loads((out / "best" / "eval" / "metrics.json").read_text())["bbox"]["bbox_mAP_50"] == result["best"]["value"]
    assert (out / "study.db").stat().st_size > 0 and json.loads((out / "study.json").read_text())["best"] == result["best"]
    html = (out / "report.html").read_text()
    assert "Optimisation history" in html and html.count("<tr>") == 4 and "data:image/png;base64," in html
    info = catalog.show(open_store(store), "models", "tuned", result["registered"]["version"]).info
    assert info["lineage"]["study"]["best"] == result["best"] and info["lineage"]["study"]["trials"] == 3


def test_the_tune_pipeline_runs_its_trials_on_parallel_workers_sharing_one_study(kitti_root, tmp_path):
    """kfp.local runs the ParallelFor's two workers at once: both draw trials of the one study (its journal file in
    the local store's studies/), the study stops at three trials in all, and the best step finds the best trial's
    model among the workers' collected models and registers it with the study in its lineage."""
    import optuna

    from admlops import catalog
    from admlops.components.tune.tune import open_study, storage
    from admlops.objectstore import open_store
    from admlops.pipelines.local import run_local

    store = tmp_path / "store"
    run = run_local("tune", {"source": str(kitti_root), "tune_trials": 3, "tune_workers": 2, "tune_max_iters": 2,
                             "tune_reports": 1, "zoo_model_name": "tuned"}, store)
    journals = list((store / "studies").glob("*.journal"))
    assert len(journals) == 1
    study = open_study(storage(journals[0]), journals[0].stem, 0)
    assert len(study.trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["worker"] for t in study.trials} == {0, 1}, "the two workers did not share the study"
    [published] = list(run.rglob("study.json"))
    result = json.loads(published.read_text())
    assert result["best"]["number"] == study.best_trial.number and result["best"]["value"] == study.best_value
    assert (published.parent / "best" / "model.pth").is_file() and (published.parent / "study.db").is_file()
    info = catalog.show(open_store(str(store)), "models", "tuned", result["registered"]["version"]).info
    assert info["lineage"]["study"]["name"] == journals[0].stem and info["lineage"]["study"]["trials"] == 3
