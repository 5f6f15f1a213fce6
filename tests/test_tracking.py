"""Where MLflow runs are stored and what they carry, on a throwaway SQLite store in tmp_path."""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.server
import json
import multiprocessing
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pytest

from lstm_ae import tracking


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Run in tmp_path with no MLflow or DVC settings, and undo what MLflow sets globally.

    mlflow.set_tracking_uri and set_experiment also export MLFLOW_TRACKING_URI and
    MLFLOW_EXPERIMENT_ID; setting each variable before deleting it makes monkeypatch restore it.
    """
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.chdir(tmp_path)
    yield
    while mlflow.active_run():
        mlflow.end_run()


def test_project_root_is_cwd_or_dvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracking.project_root() == tmp_path.resolve()
    parent = tmp_path / "repo"
    parent.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(parent))
    assert tracking.project_root() == parent.resolve()


def test_tracking_uri_is_project_sqlite_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert tracking.tracking_uri() == f"sqlite:///{(tmp_path / 'repo').resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.tracking_uri() == "http://tracking.example:5000"


def test_flatten_params_uses_dotted_keys_and_lists() -> None:
    params = {"seed": 42, "model": {"encoder_widths": (512, 256), "head": "lstm"}, "a": {"b": {"c": 1}}}
    assert tracking.flatten_params(params) == {
        "seed": 42,
        "model.encoder_widths": [512, 256],
        "model.head": "lstm",
        "a.b.c": 1,
    }


def test_run_tags_carry_data_md5_and_dvc_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    tags = tracking.run_tags("c58f30108f718f92721af3b95e74349a")
    assert tags["data_md5"] == "c58f30108f718f92721af3b95e74349a"
    assert "dvc_exp_name" not in tags
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-widths")
    assert tracking.run_tags("ab" * 16)["dvc_exp_name"] == "tiny-widths"
    assert tracking.run_name() == "tiny-widths"


def test_project_store_puts_artifacts_in_dvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A queued DVC experiment runs in a temporary copy; its runs and artifacts belong in DVC_ROOT.
    repo, copy = tmp_path / "repo", tmp_path / "copy"
    repo.mkdir()
    copy.mkdir()
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    experiment_id = tracking.use_project_store("unit-test")
    assert (repo / "mlflow.db").is_file() and list(copy.iterdir()) == []
    experiment = mlflow.get_experiment(experiment_id)
    assert experiment.name == "unit-test"
    location = urlparse(experiment.artifact_location)
    assert location.scheme == "file" and Path(location.path).parent == repo.resolve()
    assert tracking.use_project_store("unit-test") == experiment_id


def test_project_store_under_mlflow_run_uses_that_runs_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow.set_tracking_uri(tracking.tracking_uri())
    other = mlflow.create_experiment("given-to-mlflow-run")
    with mlflow.start_run(experiment_id=other) as run:
        pass
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    assert tracking.use_project_store("unit-test") == other
    assert mlflow.get_experiment_by_name("unit-test") is None


def test_resume_or_start_reopens_a_known_run_and_replaces_an_unknown_one() -> None:
    tracking.use_project_store("unit-test")
    with mlflow.start_run() as first:
        pass
    with tracking.resume_or_start(first.info.run_id) as resumed:
        assert resumed.info.run_id == first.info.run_id
    with tracking.resume_or_start("0" * 32, run_name="fresh") as fresh:
        assert fresh.info.run_id != first.info.run_id
        assert fresh.info.run_name == "fresh"
    assert mlflow.get_run(fresh.info.run_id).info.status == "FINISHED"


def test_the_epoch_logger_logs_losses_and_wall_and_cpu_time_for_each_epoch() -> None:
    tracking.use_project_store("unit-test")
    logger = tracking.EpochLogger()
    with mlflow.start_run() as run:
        for epoch in range(2):
            logger.on_epoch_begin(epoch)
            cpu_started = time.process_time()
            while time.process_time() - cpu_started < 0.05:  # work
                pass
            time.sleep(0.2)  # waiting: wall time only
            logger.on_epoch_end(epoch, {"loss": 0.5 - epoch / 10, "val_loss": 0.4})
    client = mlflow.MlflowClient()
    history = {
        key: client.get_metric_history(run.info.run_id, key)
        for key in ("train_loss", "val_loss", "epoch_seconds", "epoch_cpu_seconds")
    }
    assert all(sorted(m.step for m in metrics) == [1, 2] for metrics in history.values())
    assert [m.value for m in sorted(history["train_loss"], key=lambda m: m.step)] == pytest.approx([0.5, 0.4])
    for wall, cpu in zip(history["epoch_seconds"], history["epoch_cpu_seconds"]):
        assert wall.value >= 0.25 and 0.05 <= cpu.value < wall.value - 0.1


def test_the_epoch_logger_keeps_the_epochs_a_server_missed_and_sends_them_once_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracking.use_project_store("unit-test")
    down: set[int] = {2, 3}  # the epochs whose end finds the server down
    current = [0]
    monkeypatch.setattr(
        tracking,
        "server_trouble",
        lambda uri, timeout_s=5: "connection refused" if current[0] in down else None,
    )
    logger, client, logged = tracking.EpochLogger(), mlflow.MlflowClient(), []
    with mlflow.start_run() as run:

        def epoch(number: int) -> None:
            current[0] = number
            logger.on_epoch_begin(number - 1)
            logger.on_epoch_end(number - 1, {"loss": 1 / number, "val_loss": 0.5})
            logged.append(sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss")))

        for number in (1, 2, 3, 4):
            epoch(number)
        assert logged == [[1], [1], [1], [1, 2, 3, 4]]  # training went on; nothing lost
        down, logged = {5}, []
        epoch(5)
        monkeypatch.setattr(tracking, "SERVER_WAIT_S", 0)
        with pytest.raises(tracking.TrackingServerDown, match=r"the metrics of epoch\(s\) 5 are not logged"):
            logger.on_train_end()  # the server still down when training ends: said, not lost silently
        down = set()
        logger.on_train_end()
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5]
    assert sorted(history, key=lambda m: m.step)[1].value == pytest.approx(0.5)  # epoch 2's own loss


class Health(http.server.BaseHTTPRequestHandler):
    """GET /health answers with ``status``, as a tracking server (or a proxy in front of one) does."""

    status = 200

    def do_GET(self) -> None:  # the name http.server calls
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def answering(status: int) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Answer", (Health,), {"status": status}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_tracking_server_takes_requests_when_its_health_answers_below_500() -> None:
    assert tracking.server_trouble("sqlite:///mlflow.db") is None  # a file: no server to ask
    with answering(200) as url:
        assert tracking.server_trouble(url) is None
    with answering(401) as url:
        assert tracking.server_trouble(url) is None  # up, behind a login
    with answering(503) as url:
        assert tracking.server_trouble(url) == "HTTP 503"  # a proxy whose MLflow is down
    assert tracking.server_trouble(url) == "connection refused"  # that port is closed now


def test_a_stage_does_not_start_against_a_tracking_server_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with answering(200) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        tracking.require_tracking_server(wait_s=0)
    expected = (
        rf"the MLflow tracking server at {url} \(MLFLOW_TRACKING_URI\) does not answer \(connection refused\)"
    )
    with pytest.raises(tracking.TrackingServerDown, match=expected):
        tracking.require_tracking_server(wait_s=0)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    tracking.require_tracking_server(wait_s=0)  # the project's SQLite store: nothing to check


def test_a_training_run_samples_system_metrics_until_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # MLflow's default: 10 s
    tracking.use_project_store("unit-test")
    with tracking.start_training_run("sampled", {"task": "reconstruct"}) as run:
        time.sleep(1.5)
    logged = mlflow.get_run(run.info.run_id)
    assert logged.info.run_name == "sampled" and logged.data.tags["task"] == "reconstruct"
    system = [key for key in logged.data.metrics if key.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system and "system/system_memory_usage_megabytes" in system
    samples = mlflow.MlflowClient().get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert len(samples) >= 2
    time.sleep(0.5)  # the sampler stopped with the run: no sample after its end
    assert len(
        mlflow.MlflowClient().get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    ) == len(samples)


def test_the_training_data_is_the_runs_input_named_by_file_and_archive_md5() -> None:
    tracking.use_project_store("unit-test")
    x_train = np.zeros((5, 32, 96), dtype=np.float32)
    with mlflow.start_run() as run:
        tracking.log_training_data(Path("data/processed/cifar10.npz"), "c5" * 16, x_train)
    (logged,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == ("cifar10", "c5" * 16)
    assert json.loads(logged.dataset.source) == {"uri": "data/processed/cifar10.npz"}
    assert [(tag.key, tag.value) for tag in logged.tags] == [("mlflow.data.context", "training")]
    (spec,) = json.loads(logged.dataset.schema)["mlflow_colspec"]
    assert spec["tensor-spec"] == {"dtype": "float32", "shape": [-1, 32, 96]}


def test_the_ui_url_opens_the_runs_table_in_a_view_with_the_test_metrics() -> None:
    url = tracking.ui_url("http://127.0.0.1:5000")
    experiment = mlflow.get_experiment_by_name(tracking.EXPERIMENT)
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
        "?workflowType=machine_learning&viewStateShareKey=test-metrics"
    )
    view = json.loads(experiment.tags["mlflow.sharedViewState.test-metrics"])
    state = json.loads(view["state"])
    assert state["orderByKey"] == "metrics.`test_mse`" and state["orderByAsc"] is True
    assert {"metrics.`test_mse`", "metrics.`test_psnr`", "metrics.`test_ssim`"} <= set(
        state["selectedColumns"]
    )
    assert tracking.ui_url("http://127.0.0.1:5000") == url  # again: the same experiment and view


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
    uri = tracking.tracking_uri()
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
        return tracking.use_project_store()
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
    experiments = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri()).search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == [tracking.EXPERIMENT]


def test_a_store_locked_for_too_long_fails_naming_the_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filelock import FileLock

    monkeypatch.setattr(tracking, "STORE_LOCK_TIMEOUT_S", 0.2)
    # Another holder: flock knows no owner but the open file.
    with (
        FileLock(str(tmp_path / "mlflow.db.lock")),
        pytest.raises(tracking.StoreBusyError, match=r"held .*mlflow\.db\.lock for 0\.2 s"),
    ):
        tracking.use_project_store()
    assert not (tmp_path / "mlflow.db").exists()  # nothing touched the store


def logged_run(keras_file: Path) -> str:
    """A finished run holding a logged reconstruction model."""
    with mlflow.start_run() as run:
        tracking.log_reconstruction_model(keras_file)
    return run.info.run_id


@pytest.mark.slow
def test_champion_moves_only_to_a_better_test_mse(tmp_path: Path) -> None:
    import keras

    tracking.use_project_store()
    keras_file = tmp_path / "tiny.keras"
    keras.Sequential([keras.Input((32, 96)), keras.layers.Dense(96, activation="sigmoid")]).save(keras_file)
    client = mlflow.MlflowClient()

    def champion() -> tuple[str, str]:
        version = client.get_model_version_by_alias(tracking.REGISTERED_MODEL, tracking.CHAMPION)
        return str(version.version), version.tags["test_mse"]

    first, worse, better = (logged_run(keras_file) for _ in range(3))
    assert tracking.register_model(first, 0.010) == ("1", True)
    assert tracking.register_model(worse, 0.020) == ("2", False)
    assert champion() == ("1", "0.01")
    assert tracking.register_model(better, 0.005) == ("3", True)
    assert champion() == ("3", "0.005")
    assert tracking.register_model(better, 0.005) == ("3", True)  # evaluated again: no new version
    assert len(client.search_model_versions(f"name = '{tracking.REGISTERED_MODEL}'")) == 3

    served = mlflow.pyfunc.load_model(f"models:/{tracking.REGISTERED_MODEL}@{tracking.CHAMPION}")
    out = served.predict(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert out["reconstruction"].shape == (2, 32, 32, 3) and out["mse"].shape == (2,)
