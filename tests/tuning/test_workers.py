"""Running a study's trials in worker processes (lstm_ae.tuning.workers), through the real command
line on tiny data: signals, killed and lost workers, the time budget, the progress bar, and
several workers and commands on one study on a real PostgreSQL server."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lstm_ae.config import load_config
from lstm_ae.paths import TUNE_SUMMARY
from lstm_ae.stages import tune as tune_stage
from lstm_ae.tuning import search, workers
from lstm_ae.tuning.spawn import WorkerJob
from tests.helpers.postgres import Cluster, require_postgres, throwaway_postgres
from tests.helpers.projects import cli_env
from tests.helpers.studies import (
    assert_one_child_run_per_trial,
    load_study,
    make_project,
    mlflow_runs,
    split_runs,
    start_tune,
    tune_cli,
    wait_for_trials,
)


@pytest.mark.slow
def test_an_interrupt_keeps_finished_trials_and_the_same_command_continues(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group; `kill` (SIGTERM) reaches the runner only, which
    passes it on to its workers. One study takes both, one after the other (the second in the
    command that continued after the first), and the same command then finishes it."""
    project = make_project(tmp_path, n_trials=6, max_epochs=30, pruner="none")
    kept, killed = 0, 0
    for signum, to_group in ((signal.SIGINT, True), (signal.SIGTERM, False)):
        process = start_tune(project, "--workers", "2")
        try:
            wait_for_trials(process, lambda: load_study(project), complete=kept + 1)
            os.killpg(process.pid, signum) if to_group else process.send_signal(signum)
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        assert process.returncode == 128 + signum, stderr
        assert f"interrupted ({signal.Signals(signum).name})" in stderr
        assert "run the same command to continue" in stderr and "Traceback" not in stderr
        study = load_study(project)
        assert kept < search.finished_trials(study) < 6  # this command's finished trials are kept
        kept = search.finished_trials(study)
        assert TrialState.RUNNING not in [t.state for t in study.trials]
        parents, children = split_runs(mlflow_runs(project))
        assert len(parents) == 1 and parents[0].info.status == "KILLED"
        statuses = [r.info.status for r in children]
        assert statuses.count("KILLED") > killed and "RUNNING" not in statuses
        killed = statuses.count("KILLED")

    tune_cli(project, "--workers", "2")  # the same command as before the interrupts
    assert search.finished_trials(load_study(project)) == 6


@pytest.mark.slow
def test_a_killed_trial_process_is_marked_failed_and_the_study_goes_on(tmp_path: Path) -> None:
    """kill -9 (or the OOM killer) on a trial's process: the trial fails, and the trials that
    process had yet to run go to the next one."""
    project = make_project(tmp_path, n_trials=3, max_epochs=40, pruner="none")
    process = start_tune(project)
    try:
        victim = wait_for_trials(process, lambda: load_study(project))[0]
        os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        _, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr
    assert f"trial {victim.number} FAIL: its worker" in stderr and "killed by signal 9" in stderr
    study = load_study(project)
    assert study.trials[victim.number].state == TrialState.FAIL
    assert len(study.trials) == 3 and search.finished_trials(study) == 2
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # one process ran both of the others
    _, children = split_runs(mlflow_runs(project))
    killed = [r for r in children if r.info.run_id == victim.user_attrs["mlflow_run_id"]]
    assert killed[0].info.status == "FAILED" and "killed by signal 9" in killed[0].data.tags["error"]


@pytest.mark.slow
def test_a_worker_lost_on_another_machine_is_failed_by_optunas_heartbeat(tmp_path: Path) -> None:
    """SIGKILL to the whole command (runner and trial process): nothing records the end. The
    trial is then made to look as if it ran on another machine, where this machine cannot see
    its process; only the heartbeat tells that it stopped."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    # 60 epochs without early stopping: each trial lasts seconds, far longer than one poll of
    # the study. (A CI run once saw none of 3 trials running, cause not found; wait_for_trials
    # then prints the trials and the command's stderr.)
    project = make_project(
        tmp_path,
        train={"patience": 1000},
        n_trials=3,
        max_epochs=60,
        pruner="none",
        storage=url,
        heartbeat_s=1,
    )
    optuna.storages.RDBStorage(url)  # its tables, made before the command and this test both poll
    process = start_tune(project)
    try:
        victim = wait_for_trials(process, lambda: load_study(project, storage=url))[0]
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    storage = optuna.storages.RDBStorage(url)
    storage.set_trial_user_attr(victim._trial_id, "worker", "elsewhere:1")
    assert storage.get_trial(victim._trial_id).state == TrialState.RUNNING

    result = tune_cli(project)  # starts after the 2 s grace period: TensorFlow's import alone takes longer
    assert f"trial {victim.number} FAIL: its worker elsewhere:1 stopped sending heartbeats" in result.stderr
    study = load_study(project, storage=url)
    assert study.trials[victim.number].state == TrialState.FAIL
    assert search.finished_trials(study) == 3 and TrialState.RUNNING not in {t.state for t in study.trials}
    _, children = split_runs(mlflow_runs(project))
    lost = [r for r in children if r.info.run_id == victim.user_attrs["mlflow_run_id"]]
    assert lost[0].info.status == "FAILED" and "stopped sending heartbeats" in lost[0].data.tags["error"]


@pytest.mark.slow
def test_the_time_budget_stops_starting_trials(tmp_path: Path) -> None:
    project = make_project(tmp_path, n_trials=10)
    # The first trial starts at once and outlasts the budget; its process (given up to 3
    # trials) then starts no other.
    tune_cli(project, "--timeout", "1")
    assert len(load_study(project).trials) == 1
    assert json.loads((project / TUNE_SUMMARY).read_text(encoding="utf-8"))["n_complete"] == 1


def test_trials_left_running_by_a_dead_process_on_this_host_are_failed_on_resume() -> None:
    study = optuna.create_study()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=False,
    )
    owners = {
        "dead": workers.worker_id(int(dead.stdout)),
        "alive": workers.worker_id(),
        "elsewhere": "another-host:1",
    }
    for owner in owners.values():
        study.ask().set_user_attr("worker", owner)
    assert workers.fail_orphans(study, "no longer exists") == [0]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]


def test_the_report_waits_for_the_trials_other_commands_are_running() -> None:
    """So that two machines sharing a study write the same best parameters: a command whose own
    trials are done waits for the other's, and not for trials of a process that is gone."""
    study = optuna.create_study()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    study.ask().set_user_attr("worker", workers.worker_id(int(dead.stdout)))
    elsewhere = study.ask()
    elsewhere.set_user_attr("worker", "another-host:1")
    threading.Timer(1.0, lambda: study.tell(elsewhere, 0.25)).start()
    started = time.monotonic()
    workers.wait_for_running_trials(study, poll_s=0.1)
    assert time.monotonic() - started >= 1.0
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]


@pytest.mark.slow
def test_in_a_terminal_a_bar_counts_trials_and_each_trial_line_is_printed_once(
    in_project: Path, capfd
) -> None:
    make_project(in_project, n_trials=2, max_epochs=1, pruner="none")
    logging.getLogger().setLevel(logging.INFO)  # what the CLI sets without --quiet
    tune_stage.run(load_config(in_project / "params.yaml"), isolate=True, progress=True)
    err = capfd.readouterr().err
    assert "trials: 100%" in err and "2/2" in err and "best val MSE" in err
    for number in (0, 1):  # printed by the runner above the bar; the quiet workers do not repeat it
        assert err.count(f"trial {number} COMPLETE after 1 epoch(s)") == 1, err
    assert len({t.user_attrs["worker"] for t in load_study(in_project).trials}) == 1  # one process ran both


class EndedProcess:
    """Stands in for a worker process that has exited, for the runner's accounting."""

    name = "tune-worker-0"

    def __init__(self, exitcode: int) -> None:
        self.exitcode = exitcode
        self.pid = 1


def a_pool(study: optuna.Study, budget: int, **tune: object) -> workers._Pool:
    values = {f"tune.{key}": value for key, value in tune.items()}
    cfg = load_config(Path(__file__).resolve().parents[2] / "params.yaml", values=values)
    return workers._Pool(study, budget, WorkerJob(cfg, "parent", "0", budget, worker=0))


def test_each_new_process_gets_its_share_of_what_the_command_and_the_study_still_need() -> None:
    """trials_per_process caps a batch, the workers split the budget between them (no worker
    idle), and trials other commands finished or run count against the study's size."""
    study = optuna.create_study()
    assert a_pool(study, 10, workers=2, trials_per_process=3, n_trials=10).next_batch() == 3
    assert a_pool(study, 4, workers=2, trials_per_process=3, n_trials=10).next_batch() == 2
    for _ in range(9):
        study.tell(study.ask(), 0.5)
    pool = a_pool(study, 10, workers=2, trials_per_process=3, n_trials=10)
    assert pool.next_batch() == 1
    pool.started = 10
    assert pool.next_batch() == 0


def test_no_process_starts_for_the_trials_another_command_is_running() -> None:
    """With the study's last trial running elsewhere, a new process would find the study full and
    exit at once, and the runner would start another in its place, until that trial ended."""
    study = optuna.create_study()
    study.tell(study.ask(), 0.5)
    study.ask().set_user_attr("worker", "another-host:1")
    assert a_pool(study, 2, workers=2, trials_per_process=1, n_trials=2).next_batch() == 0
    assert a_pool(study, 2, workers=2, trials_per_process=1, n_trials=3).next_batch() == 1


def test_a_worker_that_fails_on_its_own_stops_new_starts_and_hands_back_its_trials() -> None:
    study = optuna.create_study()
    pool = a_pool(study, 6, workers=2, trials_per_process=3, n_trials=6)
    pool.started = 3
    pool.ended(workers._Worker(EndedProcess(exitcode=1), batch=3))
    assert pool.failed == ["tune-worker-0 (exit code 1)"]
    assert pool.started == 0  # it started none of its trials
    assert pool.next_batch() == 0


# --- a real PostgreSQL server, several workers at once ------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[Cluster]:
    with throwaway_postgres(require_postgres()) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def postgres_url(postgres: Cluster) -> str:
    return postgres.create("optuna")


@pytest.mark.slow
def test_commands_opening_a_new_postgresql_database_at_once_all_open_it(postgres: Cluster) -> None:
    """Two machines starting on a new database: Optuna creates its tables on first open, and four
    at once collided in PostgreSQL's catalog ("duplicate key value violates unique constraint
    pg_type_typname_nsp_index") in 3 of 4 openers, in each of 3 runs, before the retry."""
    url = postgres.create("fresh")
    barrier = threading.Barrier(4)

    def open_it() -> str:
        barrier.wait()
        try:
            search.open_storage(url, Path.cwd())
            return "opened"
        except search.StorageError as exc:
            return str(exc)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: open_it(), range(4)))
    assert results == ["opened"] * 4


@pytest.mark.slow
def test_four_workers_on_postgresql_record_every_trial_once(tmp_path: Path, postgres_url: str) -> None:
    """Four trial processes writing to one PostgreSQL study at once (the journal-storage study
    above covers a slot taking a second trial)."""
    project = make_project(tmp_path, n_trials=4, workers=4, storage=postgres_url, study_name="pg")
    result = tune_cli(project)
    assert "database is locked" not in result.stderr and "Traceback" not in result.stderr
    study = load_study(project, "pg", postgres_url)
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    parents, children = split_runs(mlflow_runs(project))
    assert len(parents) == 1
    assert_one_child_run_per_trial(study, children, parents[0].info.run_id)


@pytest.mark.slow
def test_two_commands_at_once_share_one_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    """As on two machines: both fill one study; neither loses nor repeats a trial."""
    project = make_project(tmp_path, n_trials=6, workers=1, storage=postgres_url, study_name="pg-shared")
    tune_cli(project, "--n-trials", "1", "--workers", "1")  # creates the study and its parent run
    env = cli_env()
    command = [sys.executable, "-m", "lstm_ae", "tune"]
    both = [
        subprocess.Popen(command, cwd=project, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for process in both:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    study = load_study(project, "pg-shared", postgres_url)
    # Each command re-reads the study before every trial, so it stops at 6 finished trials,
    # give or take the trial the other command had running at that moment (one worker each:
    # four worker processes on two cores only slowed the test; four at once is the test above).
    assert 6 <= len(study.trials) <= 7
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    parents, children = split_runs(mlflow_runs(project))
    assert len(parents) == 1
    assert_one_child_run_per_trial(study, children, parents[0].info.run_id)
