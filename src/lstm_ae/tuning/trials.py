"""What a spawned tuning process does: load the trial data and the shared study, then run its
trials, each one a child MLflow run of the study's run.

With lstm_ae.tuning.objective, the only part of the tuning room that trains, so the only one that
imports Keras; lstm_ae.tuning.spawn imports it once TensorFlow's banner is muted.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator

import mlflow
import numpy as np
import optuna
import psutil
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from lstm_ae.config import Config
from lstm_ae.data.dataset import load_dataset
from lstm_ae.data.sequences import scale
from lstm_ae.errors import UserError
from lstm_ae.paths import PROCESSED
from lstm_ae.startup import deferred_interrupts, raise_pending
from lstm_ae.tracking import curves, runs, store
from lstm_ae.tuning import search
from lstm_ae.tuning.objective import Objective
from lstm_ae.tuning.spawn import WorkerJob
from lstm_ae.tuning.workers import stale_trial, worker_id

log = logging.getLogger(__name__)


def work(job: WorkerJob) -> None:
    """One worker: load the trial data and run up to ``job.n_trials`` trials of the shared study.

    The first trial runs unless the study filled up while this process started: the runner
    checked the budget when it started it, but TensorFlow's import takes seconds, in which
    another command (another machine) may have started the last trials. No further trial
    starts after ``job.deadline`` (``time.monotonic()``, a clock every process on the machine
    shares) or once the study holds tune.n_trials, running trials included.
    """
    _quiet_worker_logs(job.log_level)
    store.use_project_store()
    x_train, x_val, data_md5 = trial_data(job.cfg)
    study = _load_study(job.cfg, job.worker)
    objective = _objective(job, x_train, x_val, data_md5)
    tune = job.cfg.tune
    if len(study.get_trials(deepcopy=False, states=(*search.FINISHED, TrialState.RUNNING))) >= tune.n_trials:
        return  # a trial now would be one too many, and come after the other command's report
    optimize(study, objective, job.n_trials, tune.n_trials, job.deadline)


def _quiet_worker_logs(log_level: int | None) -> None:
    """Set up a spawned process's logging (it starts with none) and keep one line per trial:
    Optuna's own lines, its tracebacks for expected failures and TensorFlow's retracing notes
    (expected, one model per trial) would bury it."""
    if log_level is not None:
        logging.basicConfig(level=log_level, format="%(levelname)s %(processName)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna.study._optimize").addFilter(_expected_failures)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _load_study(cfg: Config, worker: int) -> optuna.Study:
    """The shared study, with this process's own sampler.

    Seeds differ per worker (or every worker would propose the same trials) and per resumption.
    """
    tune = cfg.tune
    storage = search.open_storage(tune.storage, store.project_root(), tune.heartbeat_s, on_stale=stale_trial)
    study = optuna.load_study(
        study_name=tune.study_name, storage=storage, pruner=search.make_pruner(tune.pruner, tune.max_epochs)
    )
    study.sampler = search.make_sampler(cfg.seed + 10_007 * worker + len(study.trials))
    return study


def _objective(job: WorkerJob, x_train: np.ndarray, x_val: np.ndarray, data_md5: str) -> Objective:
    """The objective, each trial of it a child MLflow run of the study's run, tagged like the
    runs of ``train`` so that the two can be compared."""
    cfg = job.cfg
    tags = {
        "optuna.study_name": cfg.tune.study_name,
        **runs.run_tags(data_md5),
        **runs.task_tags(cfg.input_corruption, cfg.model.family),
    }
    tracker = functools.partial(
        _trial_run, parent_id=job.parent_id, experiment_id=job.experiment_id, tags=tags
    )
    return Objective(
        x_train,
        x_val,
        cfg.tune.search,
        cfg.train,
        cfg.tune.max_epochs,
        cfg.seed,
        tracker,
        cfg.input_corruption,
        cfg.model.precision,
        cfg.model,
    )


def optimize(
    study: optuna.Study, objective: Callable, n_trials: int, study_size: int, deadline: float
) -> None:
    """``study.optimize`` with signals held for safe points: a training step, or the end of a
    trial once Optuna has recorded it.

    Raised where it lands, a Ctrl-C inside Optuna's own bookkeeping (writing a finished trial
    to the journal) breaks it: Optuna 5 then fails with UnboundLocalError and prints a
    traceback per worker. Held, it is raised by the callback after the trial is recorded.
    """
    with deferred_interrupts():
        study.optimize(
            objective,
            n_trials=n_trials,
            catch=(Exception,),  # a failing trial is recorded as FAIL and the study goes on
            callbacks=[
                _log_trial,
                lambda study, trial: raise_pending(),  # a safe point between trials
                # Finished plus running trials, any worker's: the study then stops at n_trials
                # finished ones without overshooting by the trials still running elsewhere.
                MaxTrialsCallback(study_size, states=(*search.FINISHED, TrialState.RUNNING)),
                functools.partial(_stop_after, deadline=deadline),
            ],
        )


def _stop_after(study: optuna.Study, trial: optuna.trial.FrozenTrial, deadline: float) -> None:
    """Start no more trials after the deadline (``time.monotonic()``), as Optuna's own ``timeout``
    would, but on a clock that the runner and all its workers share."""
    if time.monotonic() >= deadline:
        study.stop()


def trial_data(cfg: Config) -> tuple[np.ndarray, np.ndarray, str]:
    """The first tune.train_images / tune.val_images of the (already shuffled) splits, scaled, and
    the archive's md5. Fewer images than asked for means all of them."""
    data = load_dataset(PROCESSED)
    return (
        scale(data.x_train[: cfg.tune.train_images]),
        scale(data.x_val[: cfg.tune.val_images]),
        data.archive_md5,
    )


@contextlib.contextmanager
def _trial_run(
    trial: optuna.Trial, model_cfg, train_cfg, *, parent_id: str, experiment_id: str, tags: dict
) -> Iterator:
    """A child MLflow run for one trial; its status and `trial_state` tag say how the trial ended."""
    name = f"{trial.study.study_name}-trial-{trial.number}"
    with runs.child_run(
        parent_id, experiment_id, name, {**tags, "optuna.trial_number": str(trial.number)}
    ) as run:
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        trial.set_user_attr("worker", worker_id())
        configs = {"model": model_cfg.model_dump(mode="json"), "train": train_cfg.model_dump(mode="json")}
        mlflow.log_params({"trial_number": trial.number, **trial.params, **runs.flatten_params(configs)})
        results: dict[str, float] = {}
        started = time.perf_counter()
        state, status, error = "COMPLETE", "FINISHED", None
        try:
            yield [curves.EpochLogger()], results
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
            results.update(
                trial_seconds=time.perf_counter() - started,
                rss_mib=psutil.Process().memory_info().rss / 2**20,
            )
            runs.end_active_run(
                status, results, {"trial_state": state, **({"error": error} if error else {})}
            )


def _expected_failures(record: logging.LogRecord) -> bool:
    """Drop Optuna's traceback for Ctrl-C and for failures we explain in one line (UserError);
    keep it for anything unexpected."""
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, (KeyboardInterrupt, UserError))


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    log.info(search.describe_trial(trial, search.best_trial_or_none(study)))
