"""The runner of a study: spawns worker processes for its trials and supervises them.

The tune stage decides how many trials to run; this module starts the processes that run
them (lstm_ae.tuning.trials, in each process) and keeps the two stores (Optuna's storage and
MLflow) telling the same story, also when a trial's process is killed. It imports no Keras:
the runner only waits, counts and reports.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.process
import os
import socket
import sys
import time
from dataclasses import dataclass, field, replace

import optuna
import psutil
from optuna.trial import TrialState
from tqdm import tqdm

from lstm_ae.config import Config
from lstm_ae.errors import Terminated, UserError
from lstm_ae.tracking import runs
from lstm_ae.tuning import search
from lstm_ae.tuning.spawn import WorkerJob, tune_worker

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
                runs.end_run(run_id, "FAILED", {"trial_state": "FAIL", "error": f"worker {owner} {reason}"})
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
    job = WorkerJob(cfg, parent_id, experiment_id, budget, worker=0, deadline=_deadline(cfg))
    if not isolate:
        from lstm_ae.tuning.trials import work  # Keras: imported only where trials run

        work(job)
        return
    pool = _Pool(study, budget, replace(job, log_level=_worker_log_level(progress)))
    bar = tqdm(
        total=min(budget, cfg.tune.n_trials - search.finished_trials(study)),
        desc="trials",
        unit="trial",
        disable=not progress,
    )
    try:
        _supervise(pool, bar, progress)
    except Terminated:
        pool.terminate()  # SIGTERM reached this process only (Ctrl-C reaches the whole process group)
        raise
    finally:
        pool.join()
        bar.close()
    if pool.failed:
        raise TuneError(
            f"{', '.join(pool.failed)} stopped; finished trials are kept, run the same command to continue"
        )


def _deadline(cfg: Config) -> float:
    """tune.timeout_s from now on ``time.monotonic()``, the clock that every process on the
    machine shares, so the runner and its workers agree when time is up."""
    return time.monotonic() + cfg.tune.timeout_s if cfg.tune.timeout_s else math.inf


def _worker_log_level(progress: bool) -> int:
    """The log level for spawned workers: this process's, but no lower than WARNING under a
    bar, where the workers' lines would be written into the bar (the runner prints them)."""
    level = logging.getLogger().getEffectiveLevel()
    return max(level, logging.WARNING) if progress else level


def _supervise(pool: _Pool, bar: tqdm, progress: bool) -> None:
    """Keep every slot busy until the command needs no more trials and all its workers ended.

    Under a bar the wait wakes every 5 s, so that finished trials show while a worker still
    runs its next ones; without one, only a worker's end is worth waking for.
    """
    shown: set[int] = set()  # trial numbers printed above the bar
    while pool.fill():
        pool.wait(timeout=5 if progress else None)
        pool.reap()
        if progress:
            _show_new_trials(pool.study, pool.ours, shown, bar)


@dataclass(frozen=True)
class _Worker:
    """A running worker process and the number of trials it was given."""

    process: multiprocessing.process.BaseProcess
    batch: int


@dataclass
class _Pool:
    """The runner's worker processes and its count of trials handed out.

    State that the orchestration steps share, kept in one object the steps are methods of,
    rather than in variables a nested function rebinds.
    """

    study: optuna.Study
    budget: int
    job: WorkerJob  # the template each process's job is made from
    running: dict[int, _Worker] = field(default_factory=dict)  # by slot, 0 to tune.workers - 1
    started: int = 0  # trials handed to processes, less those they did not start
    failed: list[str] = field(default_factory=list)  # workers that exited with an error of their own
    ours: set[str] = field(default_factory=set)  # worker ids of this command's processes
    context: multiprocessing.context.BaseContext = field(
        default_factory=lambda: multiprocessing.get_context("spawn")  # a fork would copy TensorFlow's threads
    )

    @property
    def share(self) -> int:
        """Each worker's share of the study, so that trials_per_process never leaves a worker idle."""
        tune = self.job.cfg.tune
        return min(tune.trials_per_process, math.ceil(self.budget / tune.workers))

    def next_batch(self) -> int:
        """Trials for a new worker process; 0 once this command needs no more.

        After a worker failed nothing new starts: the command is about to stop with its error.
        The study is read again each time, as workers on other machines add to it. Trials other
        commands are running take their place too: a process started for one would find the
        study full and exit, and another would replace it, until that trial ended. A trial whose
        machine was lost (its heartbeat silent, database storages) is failed first, so that it
        does not hold its place for ever.
        """
        if self.failed or time.monotonic() >= self.job.deadline:
            return 0
        optuna.storages.fail_stale_trials(self.study)  # a no-op without a heartbeat
        tune = self.job.cfg.tune
        elsewhere = [
            t
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get("worker") not in self.ours
        ]
        free = tune.n_trials - search.finished_trials(self.study) - len(self.running) - len(elsewhere)
        return max(min(self.share, self.budget - self.started, free), 0)

    def fill(self) -> bool:
        """Start a worker in each free slot that still has trials to run; whether any runs."""
        for slot in range(self.job.cfg.tune.workers):
            if slot not in self.running and (batch := self.next_batch()):
                self.start(slot, batch)
        return bool(self.running)

    def start(self, slot: int, batch: int) -> None:
        """Spawn a fresh process for ``batch`` trials in ``slot`` (its slot seeds its sampler)."""
        process = self.context.Process(
            target=tune_worker,
            args=(replace(self.job, n_trials=batch, worker=slot),),
            name=f"tune-worker-{slot}",
        )
        process.start()
        self.running[slot] = _Worker(process, batch)
        self.ours.add(worker_id(process.pid))
        self.started += batch

    def wait(self, timeout: float | None) -> None:
        """Sleep until a worker process ends (or ``timeout`` passes)."""
        multiprocessing.connection.wait([w.process.sentinel for w in self.running.values()], timeout)

    def reap(self) -> None:
        """Take the workers that ended out of their slots and account for how each ended."""
        for slot, worker in list(self.running.items()):
            if worker.process.exitcode is not None:
                del self.running[slot]
                self.ended(worker)

    def ended(self, worker: _Worker) -> None:
        """Record how a worker ended, and hand back the trials it did not start (killed, time up,
        study full) for the next worker to run."""
        process, owner = worker.process, worker_id(worker.process.pid)
        if process.exitcode < 0:  # killed by a signal (the OOM killer, kill -9): its trial failed
            fail_orphans(self.study, f"killed by signal {-process.exitcode}", owner)
        elif process.exitcode != 0:  # trial errors are caught inside; this is the worker itself
            self.failed.append(f"{process.name} (exit code {process.exitcode})")
        self.started -= worker.batch - len(_trials_of(self.study, {owner}))

    def terminate(self) -> None:
        """Pass a SIGTERM on to every worker, so that each records its interrupted trial."""
        for worker in self.running.values():
            worker.process.terminate()

    def join(self) -> None:
        """Wait for the workers still running (after an interrupt) to record their trial; kill
        any that take over 30 s, and fail its trial, so neither store shows it running."""
        for worker in self.running.values():
            process = worker.process
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
                fail_orphans(self.study, "did not stop within 30 s of the interrupt", worker_id(process.pid))


def _trials_of(study: optuna.Study, workers: set[str]) -> list[optuna.trial.FrozenTrial]:
    """The trials, in any state, that the given worker processes started."""
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") in workers]


def _show_new_trials(study: optuna.Study, workers: set[str], shown: set[int], bar: tqdm) -> None:
    """Print the trials of ``workers`` that finished since the last call above the bar, and advance it."""
    new = [t for t in _trials_of(study, workers) if t.state.is_finished() and t.number not in shown]
    if not new:
        return
    best = search.best_trial_or_none(study)
    for trial in sorted(new, key=lambda t: t.number):
        bar.write(search.describe_trial(trial, best), file=sys.stderr)  # where log lines go
        shown.add(trial.number)
    bar.update(len(new))
    if best is not None:
        bar.set_postfix_str(f"best val MSE {best.value:.5f} (trial {best.number})")


def stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's heartbeat failed ``trial`` (its worker stopped, maybe on another machine): end its
    MLflow run too, so neither store shows it running."""
    owner = trial.user_attrs.get("worker", "unknown")
    if run_id := trial.user_attrs.get("mlflow_run_id"):
        runs.end_run(
            run_id, "FAILED", {"trial_state": "FAIL", "error": f"worker {owner} stopped sending heartbeats"}
        )
    log.warning("trial %d FAIL: its worker %s stopped sending heartbeats", trial.number, owner)
