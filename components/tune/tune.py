"""Hyperparameter search: an Optuna study over the search space a model config declares.

The config names what to search, as dotted keys of the config (the keys ``--cfg-options`` takes)::

    search_space = {
        'optim_wrapper.optimizer.lr': dict(type='float', low=1e-4, high=1e-2, log=True),
        'train_dataloader.batch_size': dict(type='int', low=4, high=12, step=4),
        'model.test_cfg.nms.iou_threshold': dict(type='categorical', choices=[0.5, 0.6, 0.7]),
    }

Each trial trains the config with its values (components/train: the same train as everywhere, ``max_iters``
iterations) and is scored by evaluate on the val split: the task's gated metric (admlops.tasks: mAP@0.5 for a 2D
detector), maximised by Optuna's TPE sampler (seeded). While a trial trains, its validation every
``max_iters / reports`` iterations is reported to the study and Optuna's median pruner stops a trial whose
intermediate value falls below the median of the earlier trials' at the same step (after the first two trials and
the first report). A trial that fails (an exception in training or evaluation) is recorded as failed, with its
error, and the study goes on; a search space with an unknown key, an empty range or an unknown type is refused
before any trial (UsageError, exit 2).

Output, published atomically at ``out``::

    study.db        the Optuna study (SQLite): every trial, its parameters, intermediate values, state
    study.json      the trials as a table (number, state, params, value, intermediate values, seconds, error,
                    the worker that ran it)
    best/           the best trial's model (train's output: config.py with the chosen values, model.pth) and
                    best/eval/metrics.json
    report.html     self-contained: the trial table, the optimisation history and the parameters' importance

With a ``name``, the best model is registered in the zoo (components/register: model, config, metrics, and the
study under study/), its lineage naming the study (its trials, the best trial and its values).

``admlops tune`` runs the study in one process (``tune``). The tune pipeline runs it on parallel workers, KFP's
own way: a step creates the study (``create_study``), a ``dsl.ParallelFor`` of ``workers`` pods runs its trials
(``work``: each opens the one study, its sampler seeded ``seed + worker``, and draws trials until the study holds
``trials``, Optuna's own distributed optimisation), and a step publishes it (``finish``) from the workers'
collected models. The workers share the study through Optuna's journal file (safe for concurrent writers on a
network filesystem, unlike SQLite) on a volume every pod mounts (``study_file``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from admlops.errors import UsageError
from admlops.localfs import atomic_dir

TYPES = ("float", "int", "categorical")
REPORTS = 3  # intermediate validations per trial, the pruner's evidence


def search_space(cfg) -> dict[str, dict]:
    """The config's ``search_space``, every entry checked against the config (module doc): a UsageError naming the
    key for an unknown key, type or an empty range."""
    from admlops.mmconfig import merge_cfg_options

    space = cfg.get("search_space")
    if not space:
        raise UsageError(f"{cfg.filename}: declares no search_space (dotted config key -> dict(type=float|int|"
                         "categorical, low=, high= | choices=)) to tune over")
    for key, spec in space.items():
        kind = spec.get("type")
        if kind not in TYPES:
            raise UsageError(f"search_space {key!r}: type {kind!r}, expected one of {', '.join(TYPES)}")
        if kind == "categorical":
            if not spec.get("choices"):
                raise UsageError(f"search_space {key!r}: no choices (an empty range)")
            sample = spec["choices"][0]
        else:
            low, high = spec.get("low"), spec.get("high")
            if low is None or high is None or not low < high:
                raise UsageError(f"search_space {key!r}: the range [{low}, {high}] is empty (low must be below high)")
            if spec.get("log") and low <= 0:
                raise UsageError(f"search_space {key!r}: a log range needs low > 0, got {low}")
            sample = int(low) if kind == "int" else float(low)
        merge_cfg_options(cfg.copy(), {key: sample})  # a key the config does not have, or a value of another kind
    return dict(space)


def suggest(trial, space: dict[str, dict]) -> dict:
    """The trial's value for every key of ``space``."""
    values = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)),
                                            log=bool(spec.get("log")))
        else:
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return values


def pruning_hook(trial, key: str):
    """An mmengine hook: each validation's ``key`` reported to ``trial``; a trial the pruner stops raises
    optuna's TrialPruned out of training."""
    import optuna
    from mmengine.hooks import Hook

    class ReportToStudy(Hook):
        priority = "LOWEST"

        def after_val_epoch(self, runner, metrics=None):
            if metrics and key in metrics:
                trial.report(float(metrics[key]), runner.iter)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"validation {key} {metrics[key]:.4f} at iteration {runner.iter}")

    return ReportToStudy()


def _checked(config: str, dataset_dir: str | Path):
    """(cfg, search space, task) of ``config`` on ``dataset_dir``: a bad search space or a dataset the config
    cannot read fails here, before any trial."""
    from mmengine.config import Config

    from admlops import compat
    from admlops.configs import resolve
    from admlops.mmconfig import use_dataset
    from admlops.tasks import task_of

    compat.apply()
    cfg = Config.fromfile(str(resolve("models", config)))
    space = search_space(cfg)
    use_dataset(cfg, dataset_dir)
    return cfg, space, task_of(cfg)


def storage(path: str | Path):
    """The Optuna storage in file ``path``: SQLite for ``*.db`` (one process: ``admlops tune``), otherwise Optuna's
    journal file (what several processes on a shared volume write to at once: the pipeline's workers)."""
    import optuna

    if str(path).endswith(".db"):
        return f"sqlite:///{path}"
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def open_study(where, name: str, seed: int, create: bool = False):
    """The study ``name`` in storage ``where`` with this process's sampler (TPE, seeded) and pruner (median)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = dict(study_name=name, storage=where, sampler=optuna.samplers.TPESampler(seed=seed),
                  pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    return optuna.create_study(direction="maximize", **kwargs) if create else optuna.load_study(**kwargs)


def run_trials(dataset_dir: str | Path, study, config: str, trials: int, max_iters: int, reports: int, seed: int,
               models: Path, worker: int = 0, timeout_s: float | None = None) -> None:
    """Run trials of ``study`` until it holds ``trials`` (with the other workers', if any, counted), each trial's
    model kept at ``models/trial-<number>``."""
    import optuna

    from admlops.components.evaluate.evaluate import evaluate
    from admlops.components.train.train import train, work_dir_of

    if trials < 1 or max_iters < 1 or reports < 1:
        raise UsageError(f"trials, max_iters and reports must be >= 1, got {trials}, {max_iters} and {reports}")
    _, space, task = _checked(config, dataset_dir)
    interval = max(max_iters // reports, 1)

    def objective(trial):
        trial.set_user_attr("worker", worker)
        values = suggest(trial, space)
        model = models / f"trial-{trial.number}"
        try:
            train(dataset_dir, model, config, max_iters=max_iters, seed=seed,
                  cfg_options={**values, "train_cfg.val_interval": interval}, hooks=[pruning_hook(trial, task.val_key)])
            metrics = evaluate(dataset_dir, model, model / "eval")
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # recorded with the trial (the study marks it failed and goes on)
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            shutil.rmtree(work_dir_of(model), ignore_errors=True)
        return task.metric.of(metrics)

    if len(study.trials) < trials:
        study.optimize(objective, n_trials=trials, timeout=timeout_s, catch=(Exception,), show_progress_bar=True,
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=None)])


def publish(study, config: str, metric: str, models: list[Path], tmp: Path, name: str = "", store: str = "",
            **extra) -> dict:
    """Write the study's outputs beside its study.db in ``tmp`` (module doc: study.json, best/, report.html;
    ``models``: where the trials' models are, ``trial-<number>`` in one of them) and register the best with a
    ``name``."""
    table = trial_table(study)
    if not any(t["state"] == "COMPLETE" for t in table):
        errors = "; ".join(f"trial {t['number']}: {t['error'] or t['state']}" for t in table)
        raise UsageError(f"no trial of the study completed: {errors}")
    best = study.best_trial
    found = [d / f"trial-{best.number}" for d in models if (d / f"trial-{best.number}" / "model.pth").is_file()]
    if not found:
        raise UsageError(f"the best trial {best.number}'s model is in none of {', '.join(map(str, models))}")
    shutil.copytree(found[0], tmp / "best")
    result = {"study": study.study_name, "config": config, "metric": metric, "trials": table,
              "best": {"number": best.number, "value": best.value, "params": best.params},
              "sampler": "TPE", "pruner": "median", **extra}
    (tmp / "study.json").write_text(json.dumps(result, indent=2))
    (tmp / "report.html").write_text(render_html(study, result))
    if name:
        result["registered"] = register_best(tmp, name, store)
        (tmp / "study.json").write_text(json.dumps(result, indent=2))
    return result


def tune(dataset_dir: str | Path, out: str | Path, config: str = "rtmdet_tiny_kitti", trials: int = 8,
         max_iters: int = 100, reports: int = REPORTS, seed: int = 0, name: str = "", store: str = "",
         timeout_s: float | None = None) -> dict:
    """Run the study (module doc) in this process and publish it at ``out``; returns study.json's content.
    ``name``: register the best model in the zoo of ``store`` under that name."""
    _, _, task = _checked(config, dataset_dir)
    with atomic_dir(out) as tmp, tempfile.TemporaryDirectory(prefix="admlops-tune-") as scratch:
        study = open_study(storage(tmp / "study.db"), Path(out).name, seed, create=True)
        run_trials(dataset_dir, study, config, trials, max_iters, reports, seed, Path(scratch), timeout_s=timeout_s)
        return publish(study, config, task.metric.key, [Path(scratch)], tmp, name, store, max_iters=max_iters, seed=seed)


# The pipeline's study: created by one step, its trials run by ``workers`` pods at once (a KFP ParallelFor), each
# its own sampler seed, all reading and writing the one study through a journal file on a volume they share.
STUDY_DIR_ENV = "ADMLOPS_STUDY_DIR"  # set where a cluster profile mounts its study volume (pipelines/profiles.py)


def study_file(study: str, store: str = "") -> Path:
    """Where the pipeline's study ``study`` lives: under $ADMLOPS_STUDY_DIR (a cluster's shared volume), or in a
    local store's ``studies/``; a UsageError otherwise (the workers would share nothing)."""
    from admlops.objectstore import LocalStore, open_store

    if os.environ.get(STUDY_DIR_ENV):
        return Path(os.environ[STUDY_DIR_ENV]) / f"{study}.journal"
    local = open_store(store)
    if isinstance(local, LocalStore):
        return local.root / "studies" / f"{study}.journal"
    raise UsageError(f"the tune pipeline's workers share their study through a file they all reach; the store "
                     f"{store} is not a local path and ${STUDY_DIR_ENV} is not set: give the cluster profile a "
                     "study_volume (a ReadWriteMany PersistentVolumeClaim, manifests/base)")


def create_study(dataset_dir: str | Path, config: str, seed: int, workers: int, store: str = "") -> dict:
    """Check the search space and the dataset, create an empty study; its name, file and the workers' indices."""
    import datetime
    import uuid

    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    _checked(config, dataset_dir)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"{Path(str(config)).stem}-{stamp}-{uuid.uuid4().hex[:6]}"
    path = study_file(name, store)
    path.parent.mkdir(parents=True, exist_ok=True)
    open_study(storage(path), name, seed, create=True)
    return {"study": name, "file": str(path), "workers": list(range(workers))}


def work(dataset_dir: str | Path, study_path: str, study_name: str, config: str, trials: int, max_iters: int,
         reports: int, seed: int, worker: int, out: str | Path) -> list[int]:
    """One worker: trials of the shared study until it holds ``trials``; publishes at ``out`` the models of the
    trials it completed (``trial-<number>``); returns their numbers."""
    with atomic_dir(out) as tmp:
        study = open_study(storage(study_path), study_name, seed + worker)
        run_trials(dataset_dir, study, config, trials, max_iters, reports, seed, tmp, worker=worker)
        return sorted(int(p.name.split("-")[1]) for p in tmp.glob("trial-*") if (p / "model.pth").is_file())


def finish(study_path: str, study_name: str, config: str, models: list[str | Path], out: str | Path, name: str = "",
           store: str = "", **extra) -> dict:
    """The study after its workers: published at ``out`` (module doc) from the workers' models; ``name``: the best
    model registered in the zoo of ``store``."""
    from admlops.configs import resolve
    from admlops.tasks import task_of
    from mmengine.config import Config

    import optuna

    metric = task_of(Config.fromfile(str(resolve("models", config)))).metric.key
    with atomic_dir(out) as tmp:
        optuna.copy_study(from_study_name=study_name, from_storage=storage(study_path), to_storage=storage(tmp / "study.db"))
        study = open_study(storage(tmp / "study.db"), study_name, 0)
        return publish(study, config, metric, [Path(m) for m in models], tmp, name, store, **extra)


def trial_table(study) -> list[dict]:
    return [{"number": t.number, "state": t.state.name, "params": t.params, "value": t.value,
             "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None,
             "error": t.user_attrs.get("error"), "worker": t.user_attrs.get("worker")} for t in study.trials]


def register_best(tmp: Path, name: str, store: str) -> dict:
    """The best trial's model as a zoo version (register: its metrics, the study, a lineage naming the study)."""
    from admlops.components.register.register import register

    record = register(tmp / "best", tmp / "best" / "eval", None, None, None, name, alias="", store_uri=store,
                      study_dir=tmp)
    return {k: record[k] for k in ("name", "version", "uri")}


def render_html(study, result: dict) -> str:
    """The trial table, the optimisation history (each trial's value, the best so far) and the parameters'
    importance (Optuna's fANOVA; said so where the finished trials are too few)."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    from admlops.htmlpage import page, plot_section, png_base64

    def cell(value, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    rows = "".join(
        f"<tr><td>{t['number']}</td><td>{t['state']}</td><td>{cell(t['value'], '.4f')}</td>"
        f"<td>{html.escape(json.dumps(t['params']))}</td><td>{cell(t['seconds'], '.0f')}</td>"
        f"<td>{html.escape(t['error'] or '')}</td></tr>" for t in result["trials"])
    body = [f"<h1>Study {html.escape(result['study'])}: {html.escape(result['config'])}</h1>",
            f"<p>Maximising {html.escape(result['metric'])} on the val split; best trial {result['best']['number']}: "
            f"{result['best']['value']:.4f} with {html.escape(json.dumps(result['best']['params']))}.</p>",
            "<table border=1 cellpadding=4><tr><th>trial</th><th>state</th><th>value</th><th>params</th>"
            f"<th>seconds</th><th>error</th></tr>{rows}</table>"]
    done = [t for t in result["trials"] if t["value"] is not None]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([t["number"] for t in done], [t["value"] for t in done], "o", label="trial")
    best = [max(t["value"] for t in done[:i + 1]) for i in range(len(done))]
    ax.step([t["number"] for t in done], best, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(result["metric"])
    ax.legend()
    body.append(plot_section("Optimisation history", png_base64(fig)))
    plt.close(fig)
    try:
        importance = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:  # too few finished trials, or no parameter varied
        body.append(f"<h2>Parameter importance</h2><p>Not computed: {html.escape(str(exc))}</p>")
    else:
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.4 * len(importance)))
        ax.barh(list(importance), list(importance.values()))
        ax.set_xlabel("importance (fANOVA)")
        body.append(plot_section("Parameter importance", png_base64(fig)))
        plt.close(fig)
    return page(f"Study {result['study']}", body)
