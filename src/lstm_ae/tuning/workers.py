"""Running a study's trials in spawned worker processes, each trial a nested MLflow run.

The tune stage decides how many trials to run; this module runs them and keeps the two stores
(Optuna's storage and MLflow) telling the same story, also when a trial's process is killed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator

import mlflow
import numpy as np
import optuna
import psutil
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from tqdm import tqdm

from lstm_ae import tracking
from lstm_ae.config import Config
from lstm_ae.data.dataset import load_dataset
from lstm_ae.data.sequences import scale
from lstm_ae.errors import Terminated, UserError
from lstm_ae.paths import PROCESSED
from lstm_ae.startup import deferred_interrupts, raise_pending, tune_worker
from lstm_ae.tuning import search

log = logging.getLogger(__name__)


class TuneError(UserError, RuntimeError):
    """The study cannot go on as asked; the message says what to change."""


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
        gone = (
            owner == worker
            if worker
            else owner.startswith(host) and not psutil.pid_exists(int(owner[len(host) :]))
        )
        if gone:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            if run_id := trial.user_attrs.get("mlflow_run_id"):
                tracking.end_run(
                    run_id, "FAILED", {"trial_state": "FAIL", "error": f"worker {owner} {reason}"}
                )
            log.warning("trial %d FAIL: its worker %s %s", trial.number, owner, reason)
            orphans.append(trial.number)
    return orphans


def wait_for_running_trials(study: optuna.Study, poll_s: float = 2.0) -> None:
    """Wait for the trials that other commands (other machines) are running now, so that every
    command sharing a study writes the same report.

    Trials whose process on this host is gone are failed, as are those Optuna's heartbeat finds
    silent (a lost machine). Trials started after the wait began are not waited for: a command
    with a larger tune.n_trials could keep adding them for hours.
    """
    waiting = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if waiting:
        log.info("waiting for trial(s) %s, running elsewhere, before writing the report", sorted(waiting))
    while waiting:
        time.sleep(poll_s)
        fail_orphans(study, "no longer exists")
        optuna.storages.fail_stale_trials(study)  # database storages with a heartbeat; a no-op otherwise
        waiting &= {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}


def run_trials(
    cfg: Config,
    study: optuna.Study,
    parent_id: str,
    experiment_id: str,
    budget: int,
    isolate: bool = True,
    progress: bool = False,
) -> None:
    """Run at most ``budget`` trials, tune.workers processes at a time, each process spawned
    fresh for tune.trials_per_process trials.

    TensorFlow keeps every traced training function for the life of a process, even after
    ``clear_session()`` (about 17 MiB per model here), so replacing processes is what keeps
    memory flat over a long study; each replacement costs a Python start and TensorFlow's
    import. Before each start the study is read again, so trials that workers on other
    machines finish count too, and a worker stops once finished plus running trials reach
    tune.n_trials. The time budget is checked before each trial, as Optuna's own ``timeout``
    does. ``isolate=False`` runs the trials in this process, one at a time (for tests that
    patch the objective).

    With ``progress`` (a terminal) a bar counts finished trials and this process prints each
    trial's line above it; otherwise each worker logs its own line.
    """
    if budget <= 0:
        return
    deadline = time.monotonic() + cfg.tune.timeout_s if cfg.tune.timeout_s else math.inf
    if not isolate:
        work(cfg, parent_id, experiment_id, budget, worker=0, deadline=deadline)
        return
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    # Under a bar, workers stay quiet below WARNING: their lines would be written into the bar.
    worker_level = max(level, logging.WARNING) if progress else level
    bar = tqdm(
        total=min(budget, cfg.tune.n_trials - search.finished_trials(study)),
        desc="trials",
        unit="trial",
        disable=not progress,
    )
    # Each worker's share of the study, so that trials_per_process never leaves a worker idle.
    share = min(cfg.tune.trials_per_process, math.ceil(budget / cfg.tune.workers))
    started, running, failed = 0, {}, []
    ours: set[str] = set()  # worker ids of this command's processes
    shown: set[int] = set()  # trial numbers printed above the bar

    def next_batch() -> int:
        """Trials for a new worker process; 0 once this command needs no more."""
        if failed or time.monotonic() >= deadline:
            return 0
        wanted = min(
            share, budget - started, cfg.tune.n_trials - search.finished_trials(study) - len(running)
        )
        return max(wanted, 0)

    try:
        while True:
            for slot in range(cfg.tune.workers):
                if slot not in running and (batch := next_batch()):
                    process = context.Process(
                        target=tune_worker,
                        args=(cfg, parent_id, experiment_id, batch, slot, worker_level, deadline),
                        name=f"tune-worker-{slot}",
                    )
                    process.start()
                    running[slot] = (process, batch)
                    ours.add(worker_id(process.pid))
                    started += batch
            if not running:
                break
            multiprocessing.connection.wait(
                [p.sentinel for p, _ in running.values()], timeout=5 if progress else None
            )
            for slot, (process, batch) in list(running.items()):
                if process.exitcode is not None:
                    del running[slot]
                    worker = worker_id(process.pid)
                    if process.exitcode < 0:  # killed by a signal (the OOM killer, kill -9): its trial failed
                        fail_orphans(study, f"killed by signal {-process.exitcode}", worker)
                    elif process.exitcode != 0:  # trial errors are caught inside; this is the worker itself
                        failed.append(f"{process.name} (exit code {process.exitcode})")
                    # Trials it did not start (killed, time up, study full) are free for the next worker.
                    started -= batch - len(_trials_of(study, {worker}))
            if progress:
                _show_new_trials(study, ours, shown, bar)
    except Terminated:
        # SIGTERM reached this process only (Ctrl-C reaches the whole process group): pass it on.
        for process, _ in running.values():
            process.terminate()
        raise
    finally:
        for process, _ in running.values():  # let each worker record its interrupted trial
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
                fail_orphans(study, "did not stop within 30 s of the interrupt", worker_id(process.pid))
        bar.close()
    if failed:
        raise TuneError(
            f"{', '.join(failed)} stopped; finished trials are kept, run the same command to continue"
        )


def _trials_of(study: optuna.Study, workers: set[str]) -> list[optuna.trial.FrozenTrial]:
    """The trials, in any state, that the given worker processes started."""
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") in workers]


def _show_new_trials(study: optuna.Study, workers: set[str], shown: set[int], bar: tqdm) -> None:
    """Print the trials of ``workers`` that finished since the last call above the bar, and advance it."""
    new = [t for t in _trials_of(study, workers) if t.state.is_finished() and t.number not in shown]
    if not new:
        return
    best = _best_or_none(study)
    for trial in sorted(new, key=lambda t: t.number):
        bar.write(search.describe_trial(trial, best), file=sys.stderr)  # where log lines go
        shown.add(trial.number)
    bar.update(len(new))
    if best is not None:
        bar.set_postfix_str(f"best val MSE {best.value:.5f} (trial {best.number})")


def _best_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def work(
    cfg: Config,
    parent_id: str,
    experiment_id: str,
    n_trials: int,
    worker: int,
    log_level: int | None = None,
    deadline: float = math.inf,
) -> None:
    """One worker: load the trial data and run up to ``n_trials`` trials of the shared study.

    The first trial runs unless the study filled up while this process started: the runner
    checked the budget when it started it, but TensorFlow's import takes seconds, in which
    another command (another machine) may have started the last trials. No further trial
    starts after ``deadline`` (``time.monotonic()``, a clock every process on the machine
    shares) or once the study holds tune.n_trials, running trials included.
    """
    if log_level is not None:  # a spawned process starts with no logging set up
        logging.basicConfig(level=log_level, format="%(levelname)s %(processName)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our one line per trial replaces Optuna's
    logging.getLogger("optuna.study._optimize").addFilter(_expected_failures)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes: expected, one model per trial
    tracking.use_project_store()
    x_train, x_val, data_md5 = trial_data(cfg)
    tune = cfg.tune
    storage = search.open_storage(
        tune.storage, tracking.project_root(), tune.heartbeat_s, on_stale=stale_trial
    )
    study = optuna.load_study(
        study_name=tune.study_name, storage=storage, pruner=search.make_pruner(tune.pruner, tune.max_epochs)
    )
    # Seeds differ per worker (or every worker would propose the same trials) and per resumption.
    study.sampler = search.make_sampler(cfg.seed + 10_007 * worker + len(study.trials))
    tags = {
        "optuna.study_name": tune.study_name,
        **tracking.run_tags(data_md5),
        **tracking.task_tags(cfg.input_corruption, cfg.model.family),
    }
    tracker = functools.partial(_trial_run, parent_id=parent_id, experiment_id=experiment_id, tags=tags)
    objective = search.Objective(
        x_train,
        x_val,
        tune.search,
        cfg.train,
        tune.max_epochs,
        cfg.seed,
        tracker,
        cfg.input_corruption,
        cfg.model.precision,
        cfg.model,
    )
    if len(study.get_trials(deepcopy=False, states=(*search.FINISHED, TrialState.RUNNING))) >= tune.n_trials:
        return  # a trial now would be one too many, and come after the other command's report
    optimize(study, objective, n_trials, tune.n_trials, deadline)


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
    with tracking.child_run(
        parent_id, experiment_id, name, {**tags, "optuna.trial_number": str(trial.number)}
    ) as run:
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
            results.update(
                trial_seconds=time.perf_counter() - started,
                rss_mib=psutil.Process().memory_info().rss / 2**20,
            )
            tracking.end_active_run(
                status, results, {"trial_state": state, **({"error": error} if error else {})}
            )


def stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's heartbeat failed ``trial`` (its worker stopped, maybe on another machine): end its
    MLflow run too, so neither store shows it running."""
    owner = trial.user_attrs.get("worker", "unknown")
    if run_id := trial.user_attrs.get("mlflow_run_id"):
        tracking.end_run(
            run_id, "FAILED", {"trial_state": "FAIL", "error": f"worker {owner} stopped sending heartbeats"}
        )
    log.warning("trial %d FAIL: its worker %s stopped sending heartbeats", trial.number, owner)


def _expected_failures(record: logging.LogRecord) -> bool:
    """Drop Optuna's traceback for Ctrl-C and for failures we explain in one line (UserError);
    keep it for anything unexpected."""
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, (KeyboardInterrupt, UserError))


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    log.info(search.describe_trial(trial, _best_or_none(study)))
