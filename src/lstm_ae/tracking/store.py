"""Where runs are stored: the project's SQLite store or MLFLOW_TRACKING_URI, and its experiment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import mlflow

from lstm_ae.errors import UserError

EXPERIMENT = "cifar10-lstm-autoencoder"


def project_root() -> Path:
    """The project folder, also when DVC runs a queued experiment in a temporary copy.

    DVC sets DVC_ROOT to the parent repository for ``dvc exp run --queue``/``--temp`` runs, so
    runs from temporary copies land in the same store as runs from the workspace.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set (a tracking server), else SQLite in the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def use_project_store(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the project's store and experiment; return the experiment id.

    The experiment's artifact folder is created as an absolute path in the project root, not
    relative to the working directory, or artifacts of queued runs would vanish with their copy.
    Opening a SQLite store and getting or creating the experiment happen under its lock.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    with _store_lock(uri):
        if run_id := os.environ.get("MLFLOW_RUN_ID"):
            # Launched by `mlflow run`, which created a run (in the experiment it was given) for us.
            return mlflow.get_run(run_id).info.experiment_id
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            location = None if not uri.startswith("sqlite:") else (project_root() / "mlartifacts").as_uri()
            experiment_id = _create_experiment(experiment, location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _create_experiment(name: str, location: str | None) -> str:
    """Create the experiment, or take the one another machine created since we looked.

    The SQLite store's lock serialises this on one machine; two machines starting against a fresh
    tracking server (two clones tuning one study) race, and the loser gets RESOURCE_ALREADY_EXISTS.
    """
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return mlflow.get_experiment_by_name(name).experiment_id


STORE_LOCK_TIMEOUT_S = 300


class StoreBusyError(UserError):
    """Another process kept the MLflow store's lock far longer than opening a store takes."""


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Hold ``<store>.lock`` while this process opens a SQLite store, so one at a time creates it.

    MLflow creates and migrates a new SQLite store on first open, and that is not safe against
    a second process doing the same (parallel queued experiments on a fresh clone): the others
    fail with "table ... already exists" (2 or 3 of 4 in tests/tracking/test_store.py). Nor is
    getting-or-creating the experiment. The OS releases the lock when its holder dies, so a
    crash leaves nothing stale behind. Other programs opening the store do not take it.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock, Timeout

    lock = FileLock(uri.removeprefix("sqlite:///").partition("?")[0] + ".lock")
    try:
        lock.acquire(timeout=STORE_LOCK_TIMEOUT_S)
    except Timeout:
        raise StoreBusyError(
            f"another process has held {lock.lock_file} for {STORE_LOCK_TIMEOUT_S} s; "
            "wait for it to finish (a stuck process: end it), then run again"
        ) from None
    try:
        yield
    finally:
        lock.release()
