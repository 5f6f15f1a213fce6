"""Helpers for the tuning tests: tiny projects, the `lstm-ae tune` command, and reading a
study back from both of its stores (Optuna's storage and MLflow)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import optuna
from optuna.trial import TrialState

from lstm_ae.tuning import search
from tests.helpers.projects import cli_env, make_tiny_project

TINY_SEARCH = {
    "latent_size": [4, 8],
    "encoder_layers": [0, 1],
    "encoder_width": [8],
    "decoder_layers": [1],
    "decoder_width": [8, 16],
    "learning_rate": {"low": 0.001, "high": 0.01},
    "batch_size": [32],
    "head": ["lstm", "dense"],
    "bidirectional": [False, True],
    "row_index": [False, True],
}


def make_project(root: Path, train: dict | None = None, **tune: object) -> Path:
    """A project folder with a tiny processed data set and params.yaml set for fast trials
    (``train`` updates the train section).

    A worker process runs up to 3 trials (a fresh process costs ~10 s of CPU, mostly
    TensorFlow's import); the `studied` fixture keeps the default of one."""
    settings = {
        "study_name": "tiny",
        "n_trials": 4,
        "max_epochs": 2,
        "train_images": 96,
        "val_images": 48,
        "trials_per_process": 3,
    }
    return make_tiny_project(root, train=train or {}, tune={**settings, "search": TINY_SEARCH, **tune})


def tune_cli(project: Path, *options: str, check: bool = True) -> subprocess.CompletedProcess:
    env = cli_env()
    result = subprocess.run(
        [sys.executable, "-m", "lstm_ae", "tune", *options],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"tune {' '.join(options)} failed ({result.returncode}):\n{result.stderr}")
    return result


def load_study(project: Path, name: str = "tiny", storage: str | None = None) -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=storage or search.open_storage("optuna-journal.log", project)
    )


def mlflow_runs(project: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10-lstm-autoencoder")
    return client.search_runs([experiment.experiment_id], max_results=1000)


def split_runs(runs: list[mlflow.entities.Run]) -> tuple[list, list]:
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def assert_one_child_run_per_trial(study: optuna.Study, children: list, parent_id: str) -> None:
    """Every trial recorded once in each store: unique numbers, one nested run each, same state."""
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(len(numbers)))
    by_number = {}
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        number = int(run.data.tags["optuna.trial_number"])
        assert number not in by_number, f"trial {number} has two MLflow runs"
        by_number[number] = run
    assert sorted(by_number) == numbers
    for trial in study.trials:
        run = by_number[trial.number]
        assert run.data.tags["trial_state"] == trial.state.name
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id


def start_tune(project: Path, *options: str) -> subprocess.Popen:
    """`lstm-ae tune` in its own process group (signals sent to the group reach its workers, as
    Ctrl-C does), with SIGINT's default restored: a runner started in the background ignores it."""
    return subprocess.Popen(
        [sys.executable, "-m", "lstm_ae", "tune", *options],
        cwd=project,
        env=cli_env(),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - the child must die of SIGINT as a shell job does
    )


def wait_for_trials(process: subprocess.Popen, study: Callable[[], optuna.Study], complete: int = 0) -> list:
    """Poll the study until a trial runs and at least ``complete`` trials are COMPLETE; the
    trials then RUNNING."""
    started = time.monotonic()
    while time.monotonic() < started + 300 and process.poll() is None:
        with contextlib.suppress(KeyError):  # the study is not created yet
            trials = study().trials
            running = [t for t in trials if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
            if running and sum(t.state == TrialState.COMPLETE for t in trials) >= complete:
                return running
        time.sleep(0.3)
    raise AssertionError(
        f"no trial running beside {complete} complete one(s) seen in {time.monotonic() - started:.0f} s; "
        f"the command's exit status: {process.poll()}. "
        f"Trials: {_describe(study)}. Its stderr ends:\n{_stderr_tail(process)}"
    )


def _describe(study: Callable[[], optuna.Study]) -> str:
    """Each trial's state and user attributes, or why the study could not be read."""
    try:
        return "; ".join(f"{t.number} {t.state.name} {t.user_attrs}" for t in study().trials) or "none"
    except Exception as exc:  # noqa: BLE001 - this only explains a failure already found
        return f"unreadable ({type(exc).__name__}: {exc})"


def _stderr_tail(process: subprocess.Popen, chars: int = 3000) -> str:
    if process.poll() is None or process.stderr is None:
        return "(still running)"
    return process.stderr.read()[-chars:]
