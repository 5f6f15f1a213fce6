"""tune: an Optuna study over params.yaml's search space; the study is an MLflow run, each trial a child.

Run again with the same study name and the study continues: only the trials still missing
from ``tune.n_trials`` run. Several workers (processes here, or machines sharing a database
storage) add trials to one study and log under one parent run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator

import mlflow
import numpy as np
import optuna
import psutil
from optuna.trial import TrialState

from lstm_ae import tracking, tuning
from lstm_ae.atomic import atomic_dir, write_text
from lstm_ae.config import Config
from lstm_ae.dataset import load_dataset, read_archive_md5
from lstm_ae.errors import UserError
from lstm_ae.paths import PROCESSED, TUNE_BEST, TUNE_FIGURES, TUNE_SUMMARY, TUNE_TRIALS, require
from lstm_ae.sequences import scale
from lstm_ae.startup import tune_worker

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"
SETTINGS_ATTR = "settings"


class TuneError(UserError, RuntimeError):
    """The study cannot go on as asked; the message says what to change."""


def study_settings(cfg: Config, data_md5: str) -> dict:
    """What makes trial values comparable; a study refuses to continue if any of it changed."""
    return {
        "tune.search": cfg.tune.search.model_dump(mode="json"),
        "tune.max_epochs": cfg.tune.max_epochs,
        "tune.train_images": cfg.tune.train_images,
        "tune.val_images": cfg.tune.val_images,
        "train.patience": cfg.train.patience,
        "seed": cfg.seed,
        "data_md5": data_md5,
    }


def check_settings(study: optuna.Study, settings: dict) -> None:
    """Record the settings on a new study; on an existing one, name any setting that differs."""
    earlier = study.user_attrs.get(SETTINGS_ATTR)
    if earlier is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
        return
    changed = sorted(key for key in settings.keys() | earlier.keys() if settings.get(key) != earlier.get(key))
    if changed:
        raise TuneError(
            f"study {study.study_name!r} was run with other {', '.join(changed)}; its trials would not be "
            "comparable. Choose a new tune.study_name (or --study-name), or restore the old values"
        )


def worker_id(pid: int | None = None) -> str:
    """host:pid of the process running a trial, recorded on the trial."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def fail_orphans(study: optuna.Study, reason: str, worker: str | None = None) -> list[int]:
    """Mark RUNNING trials whose process is gone as FAIL (and their MLflow runs FAILED).

    With ``worker`` only that process's trials; without, every trial started on this host by
    a process that no longer exists (a study resumed after a crash). Trials running on other
    hosts are left alone: only their own host can tell whether they still run.
    """
    host = socket.gethostname() + ":"
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker", "")
        gone = owner == worker if worker else owner.startswith(host) and not psutil.pid_exists(int(owner[len(host):]))
        if gone:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            if run_id := trial.user_attrs.get("mlflow_run_id"):
                tracking.end_run(run_id, "FAILED", {"trial_state": "FAIL", "error": f"worker {owner} {reason}"})
            log.warning("trial %d FAIL: its worker %s %s", trial.number, owner, reason)
            orphans.append(trial.number)
    return orphans


def redact(url: str) -> str:
    """A storage URL without its password, fit for logs and run tags."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def run(cfg: Config, isolate: bool = True) -> dict:
    """Top the study up to tune.n_trials finished trials, then write reports/tune and log the study."""
    tune = cfg.tune
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    require(PROCESSED, made_by="preprocess")
    experiment_id = tracking.use_project_store()
    storage = tuning.open_storage(tune.storage, tracking.project_root())
    study = optuna.create_study(study_name=tune.study_name, storage=storage, direction="minimize", load_if_exists=True)
    data_md5 = read_archive_md5(PROCESSED)
    check_settings(study, study_settings(cfg, data_md5))
    fail_orphans(study, "no longer exists")

    tags = {**tracking.run_tags(data_md5), "optuna.study_name": tune.study_name, "optuna.storage": redact(tune.storage)}
    parent_id, created = tracking.open_parent_run(experiment_id, f"study-{tune.study_name}", study.user_attrs.get(PARENT_ATTR), tags)
    study.set_user_attr(PARENT_ATTR, parent_id)
    if created:
        settings = {**tune.model_dump(mode="json"), "storage": redact(tune.storage)}
        params = {"seed": cfg.seed, "train.patience": cfg.train.patience, "tune": settings}
        mlflow.MlflowClient().log_batch(
            parent_id, params=[mlflow.entities.Param(k, str(v)) for k, v in tracking.flatten_params(params).items()]
        )
    # Trials must not resume the run that `mlflow run` handed us: they are its children.
    os.environ.pop("MLFLOW_RUN_ID", None)

    budget = tune.n_trials - tuning.finished_trials(study)
    log.info(
        "study %s in %s: %d finished trial(s); running up to %d more on %d worker(s); MLflow run %s",
        tune.study_name, redact(tune.storage), tune.n_trials - budget, max(budget, 0), tune.workers, parent_id,
    )
    status = "FAILED"
    try:
        _run_trials(cfg, study, parent_id, experiment_id, budget, isolate)
        summary = _report(cfg, study, parent_id)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        log.warning("interrupted: finished trials are kept in %s; run the same command to continue", redact(tune.storage))
        raise
    finally:
        mlflow.MlflowClient().set_terminated(parent_id, status)
    return summary


def _run_trials(
    cfg: Config, study: optuna.Study, parent_id: str, experiment_id: str, budget: int, isolate: bool = True
) -> None:
    """Run at most ``budget`` trials, tune.workers at a time, each in a fresh spawned process.

    TensorFlow keeps every traced training function for the life of a process, even after
    ``clear_session()`` (about 17 MiB per model here), so a process per trial is what keeps
    memory flat over a long study. Before each start the study is read again, so trials that
    workers on other machines finish count too: the study stops at tune.n_trials finished
    trials, give or take the trials already running elsewhere. The time budget is checked
    before each start, as Optuna's own ``timeout`` does. ``isolate=False`` runs the trials in
    this process, one at a time (for tests that patch the objective).
    """
    if budget <= 0:
        return
    if not isolate:
        work(cfg, parent_id, experiment_id, budget, worker=0)
        return
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    deadline = time.monotonic() + cfg.tune.timeout_s if cfg.tune.timeout_s else math.inf
    started, running, failed = 0, {}, []

    def wanted() -> bool:
        return (
            started < budget
            and not failed
            and time.monotonic() < deadline
            and tuning.finished_trials(study) + len(running) < cfg.tune.n_trials
        )

    try:
        while True:
            for slot in range(cfg.tune.workers):
                if slot not in running and wanted():
                    process = context.Process(
                        target=tune_worker, args=(cfg, parent_id, experiment_id, 1, slot, level), name=f"tune-worker-{slot}"
                    )
                    process.start()
                    running[slot] = process
                    started += 1
            if not running:
                break
            multiprocessing.connection.wait([p.sentinel for p in running.values()])
            for slot, process in list(running.items()):
                if process.exitcode is not None:
                    del running[slot]
                    if process.exitcode < 0:  # killed by a signal (the OOM killer, kill -9): its trial failed
                        fail_orphans(study, f"killed by signal {-process.exitcode}", worker_id(process.pid))
                    elif process.exitcode != 0:  # trial errors are caught inside; this is the worker itself
                        failed.append(f"{process.name} (exit code {process.exitcode})")
    finally:
        for process in running.values():  # on Ctrl-C the workers got SIGINT too; let them record it
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    if failed:
        raise TuneError(f"{', '.join(failed)} stopped; finished trials are kept, run the same command to continue")


def work(cfg: Config, parent_id: str, experiment_id: str, n_trials: int, worker: int, log_level: int | None = None) -> None:
    """One worker: load the trial data and run ``n_trials`` trials of the shared study."""
    if log_level is not None:  # a spawned process starts with no logging set up
        logging.basicConfig(level=log_level, format="%(levelname)s %(processName)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our one line per trial replaces Optuna's
    logging.getLogger("optuna.study._optimize").addFilter(_expected_failures)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes: expected, one model per trial
    tracking.use_project_store()
    x_train, x_val, data_md5 = trial_data(cfg)
    tune = cfg.tune
    storage = tuning.open_storage(tune.storage, tracking.project_root())
    # Seeds differ per worker (or every worker would propose the same trials) and per resumption.
    done = len(optuna.load_study(study_name=tune.study_name, storage=storage).trials)
    study = optuna.load_study(
        study_name=tune.study_name,
        storage=storage,
        sampler=tuning.make_sampler(cfg.seed + 10_007 * worker + done),
        pruner=tuning.make_pruner(tune.pruner, tune.max_epochs),
    )
    tags = {"optuna.study_name": tune.study_name, **tracking.run_tags(data_md5)}
    tracker = functools.partial(_trial_run, parent_id=parent_id, experiment_id=experiment_id, tags=tags)
    objective = tuning.Objective(x_train, x_val, tune.search, cfg.train, tune.max_epochs, cfg.seed, tracker)
    study.optimize(
        objective,
        n_trials=n_trials,
        catch=(Exception,),  # a failing trial is recorded as FAIL and the study goes on
        callbacks=[_log_trial],
    )


def trial_data(cfg: Config) -> tuple[np.ndarray, np.ndarray, str]:
    """The first tune.train_images / tune.val_images of the (already shuffled) splits, scaled, and
    the archive's md5. Fewer images than asked for means all of them."""
    data = load_dataset(PROCESSED)
    return scale(data.x_train[: cfg.tune.train_images]), scale(data.x_val[: cfg.tune.val_images]), data.archive_md5


@contextlib.contextmanager
def _trial_run(trial: optuna.Trial, model_cfg, train_cfg, *, parent_id: str, experiment_id: str, tags: dict) -> Iterator:
    """A child MLflow run for one trial; its status and `trial_state` tag say how the trial ended."""
    name = f"{trial.study.study_name}-trial-{trial.number}"
    with tracking.child_run(parent_id, experiment_id, name, {**tags, "optuna.trial_number": str(trial.number)}) as run:
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        trial.set_user_attr("worker", worker_id())
        configs = {"model": model_cfg.model_dump(mode="json"), "train": train_cfg.model_dump(mode="json")}
        mlflow.log_params({"trial_number": trial.number, **trial.params, **tracking.flatten_params(configs)})
        results: dict[str, float] = {}
        started = time.perf_counter()
        state, status, error = "COMPLETE", "FINISHED", None
        try:
            yield [tracking.EpochLogger()], results
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        except KeyboardInterrupt:
            state, status = "FAIL", "KILLED"
            raise
        except Exception as exc:
            state, status, error = "FAIL", "FAILED", f"{type(exc).__name__}: {exc}"[:500]
            trial.set_user_attr("error", error)
            raise
        finally:
            results.update(trial_seconds=time.perf_counter() - started, rss_mib=psutil.Process().memory_info().rss / 2**20)
            tracking.end_active_run(status, results, {"trial_state": state, **({"error": error} if error else {})})


def _expected_failures(record: logging.LogRecord) -> bool:
    """Drop Optuna's traceback for Ctrl-C and for failures we explain in one line (UserError);
    keep it for anything unexpected."""
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, (KeyboardInterrupt, UserError))


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        best = None
    log.info(tuning.describe_trial(trial, best))


def _report(cfg: Config, study: optuna.Study, parent_id: str) -> dict:
    """Write best_params.yaml, summary.json, trials.csv and the study figures; log them to the parent."""
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    if not counts[TrialState.COMPLETE.name]:
        raise TuneError(
            f"study {study.study_name!r} has no complete trial ({dict(counts)}); nothing to report. "
            "Check the failed trials' `error` tag in MLflow, then run the same command again"
        )
    best = study.best_trial
    overrides = tuning.best_overrides(best, cfg.train)
    command = tuning.exp_run_command(overrides)
    importances = tuning.param_importances(study, cfg.seed)
    summary = {
        "best_val_mse": best.value,
        "best_trial": best.number,
        "n_complete": counts["COMPLETE"],
        "n_pruned": counts["PRUNED"],
        "n_failed": counts["FAIL"],
        "trial_epochs": tuning.trial_epochs(study),
        "importance": importances,
    }
    header = (
        f"# Best of study {study.study_name!r}: trial {best.number}, validation MSE {best.value:.6f}\n"
        f"# ({cfg.tune.max_epochs} epochs on {cfg.tune.train_images} training images). Train the pipeline with it:\n"
        f"#   {command}\n"
    )
    body = "".join(
        f"{section}:\n" + "".join(f"  {key}: {value if isinstance(value, str) else json.dumps(value)}\n" for key, value in values.items())
        for section, values in overrides.items()
    )
    write_text(TUNE_BEST, header + body)
    write_text(TUNE_SUMMARY, json.dumps(summary, indent=2) + "\n")
    write_text(TUNE_TRIALS, study.trials_dataframe().to_csv(index=False))
    figures = tuning.study_figures(study, cfg.seed)
    with atomic_dir(TUNE_FIGURES) as tmp:
        for name, figure in figures.items():
            figure.savefig(tmp / f"{name}.png", dpi=100)

    with mlflow.start_run(run_id=parent_id):
        flat = {k: v for k, v in tracking.flatten_params(summary).items()}
        mlflow.log_metrics({k: float(v) for k, v in flat.items()})
        mlflow.set_tags(
            {"best_run_id": best.user_attrs.get("mlflow_run_id", ""), "apply_command": command}
            | {f"best.{k}": str(v) for k, v in best.params.items()}
        )
        tracking.log_figures(figures, "study")
        mlflow.log_artifact(str(TUNE_BEST), "study")
    log.info("best trial %d: val MSE %.6f; train the pipeline with it:\n  %s", best.number, best.value, command)
    return summary
