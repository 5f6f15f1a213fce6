"""tune: an Optuna study over params.yaml's search space; the study is an MLflow run, each trial a child.

Run again with the same study name and the study continues: only the trials still missing
from ``tune.n_trials`` run. Several workers (processes here, or machines sharing a database
storage) add trials to one study and log under one parent run.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable

import mlflow
import optuna
import yaml
from pydantic import BaseModel

from lstm_ae.atomic import atomic_dir, write_text
from lstm_ae.config import Config, ModelConfig, SearchSpace
from lstm_ae.data.dataset import read_archive_md5
from lstm_ae.paths import PROCESSED, TUNE_BEST, TUNE_FIGURES, TUNE_SUMMARY, TUNE_TRIALS
from lstm_ae.tracking import runs, store
from lstm_ae.tuning import search
from lstm_ae.tuning.workers import TuneError, fail_orphans, run_trials, stale_trial, wait_for_running_trials

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"
SETTINGS_ATTR = "settings"
OBJECTIVE = "val_mse"  # what a trial's value is: the best epoch's validation MSE
# Settings that studies began recording later, with the value that every earlier trial used.
ADDED_SETTINGS = {"train.global_clipnorm": None, "model.precision": "float32", "model.family": "autoencoder"}
PARENT_WAIT_S = 60  # how long a command waits for the study's creator to record the study's MLflow run


def _searched(cfg: Config) -> dict:
    """The part of tune.search that this study's family draws from (a study from before the
    restorer existed recorded the autoencoder's keys only)."""
    space = cfg.tune.search.model_dump(mode="json")
    restorer, sweep = space.pop("restorer"), space.pop("sweep")
    if cfg.model.family == "restorer":
        return {
            "restorer": restorer,
            "learning_rate": space["learning_rate"],
            "batch_size": space["batch_size"],
        }
    if cfg.model.family == "sweep_ae":
        return {"sweep": sweep, "code_size": cfg.model.sweep.code_size}
    return space


def _undrawn(family: str, section_values: Callable[[str], BaseModel]) -> dict | None:
    """The keys of the family's own model section that no trial draws (a sweep autoencoder's
    blocks, a restorer's sweeps): every trial takes them from ``section_values(section)``, the
    pipeline's model section, so the study records them. Derived from the search space, so a
    new section key is recorded without a change here. None for the autoencoder, whose trials
    draw its whole model."""
    section = {family: section for section, family in search.SECTION_FAMILIES.items()}.get(family)
    if section is None:
        return None
    drawn = SearchSpace.model_fields[section].annotation.model_fields
    values = section_values(section).model_dump(mode="json")
    return {key: value for key, value in values.items() if key not in drawn}


def study_settings(cfg: Config, data_md5: str) -> dict:
    """What makes trial values comparable; a study refuses to continue if any of it changed."""
    return {
        "tune.search": _searched(cfg),
        "tune.max_epochs": cfg.tune.max_epochs,
        "tune.train_images": cfg.tune.train_images,
        "tune.val_images": cfg.tune.val_images,
        "train.patience": cfg.train.patience,
        "train.schedule": cfg.train.schedule,
        "train.global_clipnorm": cfg.train.global_clipnorm,
        "model.precision": cfg.model.precision,
        "model.family": cfg.model.family,
        "model.undrawn": _undrawn(cfg.model.family, lambda section: getattr(cfg.model, section)),
        "seed": cfg.seed,
        "task": cfg.task,
        "corruption": cfg.input_corruption.strength,
        "data_md5": data_md5,
    }


def open_study(name: str, storage: optuna.storages.BaseStorage) -> tuple[optuna.Study, bool]:
    """Create or load the study, and whether this call created it. Its objective is named val_mse:
    the name that optuna-dashboard, the parallel-coordinate and importance plots and trials.csv
    (column value_val_mse) then show instead of a bare "Objective Value".

    Every Optuna storage creates a study atomically, so of several commands starting a new study
    at once (two machines on one database) exactly one creates it; that one opens its MLflow run.
    """
    try:
        study, created = optuna.create_study(study_name=name, storage=storage, direction="minimize"), True
    except optuna.exceptions.DuplicatedStudyError:
        study, created = optuna.load_study(study_name=name, storage=storage), False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVE])
    return study, created


def wait_for_parent_run(study: optuna.Study) -> str | None:
    """The MLflow run of a study that another command created a moment ago, once that command has
    recorded it (within PARENT_WAIT_S); None if it never does (it died), and this command opens one.

    Opening a run here too would split the study's trials over two parent runs.
    """
    log.info("study %s was just created by another command; waiting for its MLflow run", study.study_name)
    deadline = time.monotonic() + PARENT_WAIT_S
    while time.monotonic() < deadline:
        if parent_id := study.user_attrs.get(PARENT_ATTR):
            return parent_id
        time.sleep(0.5)
    log.warning("study %s got no MLflow run within %d s; opening one", study.study_name, PARENT_WAIT_S)
    return None


def check_settings(study: optuna.Study, settings: dict) -> None:
    """Record the settings on a new study; on an existing one, name any setting that differs."""
    earlier = study.user_attrs.get(SETTINGS_ATTR)
    if earlier is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
        return
    earlier = {**ADDED_SETTINGS, **earlier}  # a study from before a setting existed ran with its old value
    if "model.undrawn" not in earlier:  # recorded since 2026-12-05; before, trials used the defaults
        default = ModelConfig.model_fields
        earlier["model.undrawn"] = _undrawn(earlier["model.family"], lambda section: default[section].default)
    changed = sorted(key for key in settings.keys() | earlier.keys() if settings.get(key) != earlier.get(key))
    if changed:
        raise TuneError(
            f"study {study.study_name!r} was run with other {', '.join(changed)}; its trials would not be "
            "comparable. Choose a new tune.study_name (or --study-name), or restore the old values"
        )


def run(cfg: Config, isolate: bool = True, progress: bool = False) -> dict:
    """Top the study up to tune.n_trials finished trials, then write reports/tune and log the study."""
    tune = cfg.tune
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data_md5 = read_archive_md5(PROCESSED)  # first: a missing data set fails before any study exists
    # A study is not the run `mlflow run` made: it keeps its own parent run in the project's
    # experiment, and its trials are that run's children (runs.point_to_study).
    launched = os.environ.pop("MLFLOW_RUN_ID", None)
    experiment_id = store.use_project_store()
    storage = search.open_storage(tune.storage, store.project_root(), tune.heartbeat_s, on_stale=stale_trial)
    study, new_study = open_study(tune.study_name, storage)
    earlier_parent = study.user_attrs.get(PARENT_ATTR)
    if earlier_parent is None and not new_study and not study.trials:
        earlier_parent = wait_for_parent_run(study)  # its creator records its settings first, then this
    check_settings(study, study_settings(cfg, data_md5))
    fail_orphans(study, "no longer exists")

    tags = {
        **runs.run_tags(data_md5, trains=False),  # each trial's run has the device
        **runs.task_tags(cfg.input_corruption),
        "optuna.study_name": tune.study_name,
        "optuna.storage": search.redact(tune.storage),
    }
    parent_id, created = runs.open_parent_run(experiment_id, f"study-{tune.study_name}", earlier_parent, tags)
    study.set_user_attr(PARENT_ATTR, parent_id)
    if created:
        settings = {**tune.model_dump(mode="json"), "storage": search.redact(tune.storage)}
        params = {
            "seed": cfg.seed,
            "task": cfg.task,
            "corruption": cfg.corruption.model_dump(mode="json"),
            "train.patience": cfg.train.patience,
            "tune": settings,
        }
        mlflow.MlflowClient().log_batch(
            parent_id,
            params=[mlflow.entities.Param(k, str(v)) for k, v in runs.flatten_params(params).items()],
        )
    if launched:
        runs.point_to_study(launched, parent_id, experiment_id)

    return _run_and_report(cfg, study, parent_id, experiment_id, isolate, progress)


def _run_and_report(
    cfg: Config, study: optuna.Study, parent_id: str, experiment_id: str, isolate: bool, progress: bool
) -> dict:
    """Run the trials still missing, then report; the study's MLflow run ends with how that went.

    KILLED rather than FAILED on an interrupt, as the finished trials are kept and the same
    command continues the study.
    """
    tune = cfg.tune
    finished = search.finished_trials(study)
    budget = tune.n_trials - finished
    log.info(
        "study %s in %s: %d finished trial(s); running up to %d more on %d worker(s); MLflow run %s",
        tune.study_name,
        search.redact(tune.storage),
        finished,
        max(budget, 0),
        tune.workers,
        parent_id,
    )
    status = "FAILED"
    try:
        run_trials(cfg, study, parent_id, experiment_id, budget, isolate, progress)
        wait_for_running_trials(study)  # so that every command sharing the study reports the same best
        summary = _report(cfg, study, parent_id)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        log.warning(
            "interrupted: finished trials are kept in %s; run the same command to continue",
            search.redact(tune.storage),
        )
        raise
    finally:
        mlflow.MlflowClient().set_terminated(parent_id, status)
    return summary


def _report(cfg: Config, study: optuna.Study, parent_id: str) -> dict:
    """Write best_params.yaml, summary.json, trials.csv and the study figures; log them to the parent."""
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    if not counts["COMPLETE"]:
        raise TuneError(
            f"study {study.study_name!r} has no complete trial ({dict(counts)}); nothing to report. "
            "Check the failed trials' `error` tag in MLflow, then run the same command again"
        )
    best = study.best_trial
    tuned = search.best_overrides(best, cfg.train, cfg.model.precision, cfg.model)
    overrides = search.study_recipe(cfg) | tuned
    command = search.exp_run_command(overrides)
    importances = search.param_importances(study, cfg.seed)
    summary = {
        "best_val_mse": best.value,
        "best_trial": best.number,
        "n_complete": counts["COMPLETE"],
        "n_pruned": counts["PRUNED"],
        "n_failed": counts["FAIL"],
        "trial_epochs": search.trial_epochs(study),
        "importance": importances,
    }
    header = (
        f"# Best of study {study.study_name!r}: trial {best.number}, validation MSE {best.value:.6f}\n"
        f"# ({cfg.tune.max_epochs} epochs on {cfg.tune.train_images} training images). "
        "Train the pipeline with it:\n"
        f"#   {command}\n"
    )
    body = yaml.safe_dump(overrides, sort_keys=False, default_flow_style=None)
    write_text(TUNE_BEST, header + body)
    write_text(TUNE_SUMMARY, json.dumps(summary, indent=2) + "\n")
    write_text(TUNE_TRIALS, study.trials_dataframe().to_csv(index=False))
    figures = search.study_figures(study, cfg.seed)
    with atomic_dir(TUNE_FIGURES) as tmp:
        for name, figure in figures.items():
            figure.savefig(tmp / f"{name}.png", dpi=100)

    with mlflow.start_run(run_id=parent_id):
        mlflow.log_metrics({k: float(v) for k, v in runs.flatten_params(summary).items()})
        mlflow.set_tags(
            {"best_run_id": best.user_attrs.get("mlflow_run_id", ""), "apply_command": command}
            | {f"best.{k}": str(v) for k, v in best.params.items()}
        )
        runs.log_figures(figures, "study")
        mlflow.log_artifact(str(TUNE_BEST), "study")
    log.info(
        "best trial %d: val MSE %.6f; train the pipeline with it:\n  %s", best.number, best.value, command
    )
    return summary
