"""Where runs are stored: the project's SQLite store or MLFLOW_TRACKING_URI, its lock, concurrent writers.

On a throwaway SQLite store in tmp_path (tests/tracking/conftest.py)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest

from lstm_ae.tracking import store


def test_project_root_is_cwd_or_dvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.project_root() == tmp_path.resolve()
    parent = tmp_path / "repo"
    parent.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(parent))
    assert store.project_root() == parent.resolve()


def test_tracking_uri_is_project_sqlite_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert store.tracking_uri() == f"sqlite:///{(tmp_path / 'repo').resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert store.tracking_uri() == "http://tracking.example:5000"


def test_project_store_puts_artifacts_in_dvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A queued DVC experiment runs in a temporary copy; its runs and artifacts belong in DVC_ROOT.
    repo, copy = tmp_path / "repo", tmp_path / "copy"
    repo.mkdir()
    copy.mkdir()
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    experiment_id = store.use_project_store("unit-test")
    assert (repo / "mlflow.db").is_file() and list(copy.iterdir()) == []
    experiment = mlflow.get_experiment(experiment_id)
    assert experiment.name == "unit-test"
    location = urlparse(experiment.artifact_location)
    assert location.scheme == "file" and Path(location.path).parent == repo.resolve()
    assert store.use_project_store("unit-test") == experiment_id


def test_project_store_under_mlflow_run_uses_that_runs_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow.set_tracking_uri(store.tracking_uri())
    other = mlflow.create_experiment("given-to-mlflow-run")
    with mlflow.start_run(experiment_id=other) as run:
        pass
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    assert store.use_project_store("unit-test") == other
    assert mlflow.get_experiment_by_name("unit-test") is None


def write_runs(uri: str, experiment_id: str, runs: int, steps: int) -> list[str]:
    """What a tuning worker writes: runs, one metric per epoch, an end status; errors returned."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    errors = []
    for _ in range(runs):
        try:
            run = client.create_run(experiment_id)
            for step in range(steps):
                client.log_metric(run.info.run_id, "val_loss", 1.0 / (step + 1), step=step)
            client.set_terminated(run.info.run_id)
        except Exception as exc:  # noqa: BLE001 - the test reports every failure
            errors.append(str(exc).splitlines()[0])
    return errors


@pytest.mark.slow
def test_four_processes_writing_to_the_sqlite_store_at_once_lose_nothing(tmp_path: Path) -> None:
    """MLflow's busy timeout on SQLite makes writers wait for a lock instead of failing with
    "database is locked"; benchmarks/mlflow_sqlite_stress.py shows the same load failing in
    every worker without it."""
    uri = store.tracking_uri()
    experiment_id = mlflow.MlflowClient(tracking_uri=uri).create_experiment("stress")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        errors = list(pool.map(write_runs, *zip(*[(uri, experiment_id, 5, 40)] * 4)))
    assert errors == [[]] * 4
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([experiment_id], max_results=100)
    assert len(runs) == 20 and all(r.info.status == "FINISHED" for r in runs)
    assert all(len(client.get_metric_history(r.info.run_id, "val_loss")) == 40 for r in runs)


def open_store_after(barrier, root: str) -> str:
    """What a train stage or a queued experiment does first: open the project's store."""
    import os

    os.chdir(root)
    barrier.wait()
    try:
        return store.use_project_store()
    except Exception as exc:  # noqa: BLE001 - the test reports every failure
        return f"error: {str(exc).splitlines()[0]}"


@pytest.mark.slow
def test_processes_opening_a_new_store_at_once_share_one_experiment(tmp_path: Path) -> None:
    """Four processes opening a store that does not exist yet (parallel queued experiments on a
    fresh clone). Unserialised, MLflow's first-open migration failed in 2 or 3 of the 4 in each
    of 3 runs ("table experiments already exists" and the like), and two could create the
    experiment."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        barrier = manager.Barrier(4)  # all four open the store the moment the last is ready
        ids = list(pool.map(open_store_after, [barrier] * 4, [str(tmp_path)] * 4))
    assert len(set(ids)) == 1 and not ids[0].startswith("error"), ids
    experiments = mlflow.MlflowClient(tracking_uri=store.tracking_uri()).search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == [store.EXPERIMENT]


def test_a_store_locked_for_too_long_fails_naming_the_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filelock import FileLock

    monkeypatch.setattr(store, "STORE_LOCK_TIMEOUT_S", 0.2)
    # Another holder: flock knows no owner but the open file.
    with (
        FileLock(str(tmp_path / "mlflow.db.lock")),
        pytest.raises(store.StoreBusyError, match=r"held .*mlflow\.db\.lock for 0\.2 s"),
    ):
        store.use_project_store()
    assert not (tmp_path / "mlflow.db").exists()  # nothing touched the store
