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

from lstm_ae.tracking import curves, health, registry, runs, store, ui, unsent


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


def test_flatten_params_uses_dotted_keys_and_lists() -> None:
    params = {"seed": 42, "model": {"encoder_widths": (512, 256), "head": "lstm"}, "a": {"b": {"c": 1}}}
    assert runs.flatten_params(params) == {
        "seed": 42,
        "model.encoder_widths": [512, 256],
        "model.head": "lstm",
        "a.b.c": 1,
    }


def test_run_tags_carry_data_md5_and_dvc_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    tags = runs.run_tags("c58f30108f718f92721af3b95e74349a")
    assert tags["data_md5"] == "c58f30108f718f92721af3b95e74349a"
    assert "dvc_exp_name" not in tags
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-widths")
    assert runs.run_tags("ab" * 16)["dvc_exp_name"] == "tiny-widths"
    assert runs.run_name() == "tiny-widths"


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


def test_resume_or_start_reopens_a_known_run_and_replaces_an_unknown_one() -> None:
    store.use_project_store("unit-test")
    with mlflow.start_run() as first:
        pass
    with runs.resume_or_start(first.info.run_id) as resumed:
        assert resumed.info.run_id == first.info.run_id
    with runs.resume_or_start("0" * 32, run_name="fresh") as fresh:
        assert fresh.info.run_id != first.info.run_id
        assert fresh.info.run_name == "fresh"
    assert mlflow.get_run(fresh.info.run_id).info.status == "FINISHED"


def test_the_epoch_logger_logs_losses_and_wall_and_cpu_time_for_each_epoch() -> None:
    store.use_project_store("unit-test")
    logger = curves.EpochLogger()
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
    store.use_project_store("unit-test")
    down: set[int] = {2, 3}  # the epochs whose end finds the server down
    current = [0]
    monkeypatch.setattr(
        health,
        "server_trouble",
        lambda uri, timeout_s=5: "connection refused" if current[0] in down else None,
    )
    logger, client, logged = curves.EpochLogger(), mlflow.MlflowClient(), []
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
        monkeypatch.setattr(curves, "SERVER_WAIT_S", 0)
        with pytest.raises(health.TrackingServerDown, match=r"the metrics of epoch\(s\) 5 are not logged"):
            logger.on_train_end()  # the server still down when training ends: said, not lost silently
        down = set()
        logger.on_train_end()
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5]
    assert sorted(history, key=lambda m: m.step)[1].value == pytest.approx(0.5)  # epoch 2's own loss


def test_a_logger_that_keeps_after_an_outage_hands_the_unsent_epochs_over_instead_of_raising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The train stage keeps them on disk with its model; a tuning trial (the default) still fails."""
    store.use_project_store("unit-test")
    monkeypatch.setattr(health, "server_trouble", lambda uri, timeout_s=5: "connection refused")
    monkeypatch.setattr(curves, "SERVER_WAIT_S", 0)
    logger = curves.EpochLogger(keep_after_outage=True)
    with mlflow.start_run():
        for epoch in (0, 1):
            logger.on_epoch_begin(epoch)
            logger.on_epoch_end(epoch, {"loss": 0.5, "val_loss": 0.4})
        logger.on_train_end()
    assert logger.trouble == "no answer for 0 s: connection refused"
    assert sorted({m.step for m in logger.unsent}) == [1, 2] and len(logger.unsent) == 8


def kept_run(tmp_path: Path, trouble: str | None) -> tuple[str, Path | None]:
    """A training run whose last metrics and figure go through send_or_keep: (run id, kept folder)."""
    store.use_project_store("unit-test")
    figure = tmp_path / "reports" / "loss.png"
    figure.parent.mkdir()
    figure.write_bytes(b"png")
    with mlflow.start_run() as run:
        epoch_3 = mlflow.entities.Metric("val_loss", 0.5, 1000, 3)
        points = [epoch_3, *unsent.metric_points({"best_epoch": 3})]
        kept = unsent.send_or_keep(unsent.Unsent(run.info.run_id, points, {figure: "train"}), trouble)
    return run.info.run_id, kept


def test_what_a_server_did_not_take_is_kept_on_disk_and_sent_whole_later(tmp_path: Path) -> None:
    run_id, kept = kept_run(tmp_path, "no answer for 300 s: connection refused")
    assert kept == tmp_path / "models" / "unsent-runs" / run_id
    assert mlflow.active_run() is None  # left without a word to the store, whose exit hook would retry
    record = json.loads((kept / "run.json").read_text())
    assert record["tracking_uri"] == store.tracking_uri()
    assert record["metrics"][0] == ["val_loss", 0.5, 1000, 3]
    assert record["files"] == {"files/train/loss.png": "train"} and record["model"] is None
    assert (kept / "files/train/loss.png").read_bytes() == b"png"
    note = unsent.kept_note(kept)
    assert f"did not take run {run_id} (no answer for 300 s: connection refused)" in note
    assert f"kept in models/unsent-runs/{run_id}" in note and note.endswith("`lstm-ae send-runs`")
    client = mlflow.MlflowClient()
    assert client.get_run(run_id).info.status == "RUNNING" and not client.get_run(run_id).data.metrics

    assert unsent.send_unsent_runs() == 1
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"val_loss": 0.5, "best_epoch": 3.0}
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [3]
    assert [f.path for f in client.list_artifacts(run_id, "train")] == ["train/loss.png"]
    assert not kept.exists()
    assert unsent.send_unsent_runs() == 0  # nothing twice


def test_what_a_server_takes_is_sent_at_once_and_nothing_is_kept(tmp_path: Path) -> None:
    run_id, kept = kept_run(tmp_path, None)
    assert kept is None and not (tmp_path / "models").exists()
    assert mlflow.MlflowClient().get_run(run_id).data.metrics == {"val_loss": 0.5, "best_epoch": 3.0}


@pytest.mark.parametrize("answers", [False, True], ids=["server-gone", "server-up"])
def test_a_send_that_fails_is_kept_only_when_the_server_is_gone(
    answers: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops while train logs its last metrics (after MLflow's client retries): kept.
    A failure of a server that answers is no outage: it is raised."""

    def refused(*args: object, **kwargs: object) -> None:
        raise mlflow.exceptions.MlflowException(
            "API request to endpoint /api/2.0/mlflow/runs/log-batch failed"
        )

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", refused)
    monkeypatch.setattr(
        health, "server_trouble", lambda uri, timeout_s=5: None if answers else "cannot connect"
    )
    if answers:
        with pytest.raises(mlflow.exceptions.MlflowException, match="log-batch failed"):
            kept_run(tmp_path, None)
        return
    _, kept = kept_run(tmp_path, None)
    record = json.loads((kept / "run.json").read_text())
    assert record["reason"] == "cannot connect" and record["metrics"][0] == ["val_loss", 0.5, 1000, 3]
    assert mlflow.active_run() is None


def test_evaluate_reopening_a_kept_run_sends_what_was_kept_first(tmp_path: Path) -> None:
    """So the run is whole, its model logged to be registered, before evaluation adds to it."""
    run_id, kept = kept_run(tmp_path, "connection refused")
    with runs.resume_or_start(run_id) as resumed:
        assert resumed.info.run_id == run_id and not kept.exists()
        assert mlflow.get_run(run_id).data.metrics == {"val_loss": 0.5, "best_epoch": 3.0}


def test_a_kept_run_whose_server_still_does_not_answer_stays_kept_with_one_line(tmp_path: Path) -> None:
    run_id, kept = kept_run(tmp_path, "connection refused")
    record = json.loads((kept / "run.json").read_text())
    with answering(200) as url:
        pass  # a port that nobody listens on now
    record["tracking_uri"] = url
    (kept / "run.json").write_text(json.dumps(record))
    expected = rf"server at {url} does not answer \(connection refused\); run {run_id} stays kept in models/"
    with pytest.raises(health.TrackingServerDown, match=expected):
        unsent.send_unsent_runs()
    assert json.loads((kept / "run.json").read_text()) == record


def test_a_run_that_fails_while_its_server_is_down_fails_with_its_own_error_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, ending it called the dead server: MLflow's retries, then its traceback chained to
    the real error."""
    store.use_project_store("unit-test")
    monkeypatch.setattr(health, "server_trouble", lambda uri, timeout_s=5: "connection refused")
    with (
        pytest.raises(ValueError, match="the real error") as raised,
        mlflow.start_run() as run,
        runs.ended_as_it_failed(),
    ):
        raise ValueError("the real error")
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    assert mlflow.active_run() is None
    assert mlflow.MlflowClient().get_run(run.info.run_id).info.status == "RUNNING"


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
    assert health.server_trouble("sqlite:///mlflow.db") is None  # a file: no server to ask
    with answering(200) as url:
        assert health.server_trouble(url) is None
    with answering(401) as url:
        assert health.server_trouble(url) is None  # up, behind a login
    with answering(503) as url:
        assert health.server_trouble(url) == "HTTP 503"  # a proxy whose MLflow is down
    assert health.server_trouble(url) == "connection refused"  # that port is closed now


def test_a_stage_does_not_start_against_a_tracking_server_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with answering(200) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        health.require_tracking_server(wait_s=0)
    expected = (
        rf"the MLflow tracking server at {url} \(MLFLOW_TRACKING_URI\) does not answer \(connection refused\)"
    )
    with pytest.raises(health.TrackingServerDown, match=expected):
        health.require_tracking_server(wait_s=0)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    health.require_tracking_server(wait_s=0)  # the project's SQLite store: nothing to check


def test_a_training_run_samples_system_metrics_until_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # MLflow's default: 10 s
    store.use_project_store("unit-test")
    with runs.start_training_run("sampled", {"task": "reconstruct"}) as run:
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
    store.use_project_store("unit-test")
    x_train = np.zeros((5, 32, 96), dtype=np.float32)
    with mlflow.start_run() as run:
        runs.log_training_data(Path("data/processed/cifar10.npz"), "c5" * 16, x_train)
    (logged,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == ("cifar10", "c5" * 16)
    assert json.loads(logged.dataset.source) == {"uri": "data/processed/cifar10.npz"}
    assert [(tag.key, tag.value) for tag in logged.tags] == [("mlflow.data.context", "training")]
    (spec,) = json.loads(logged.dataset.schema)["mlflow_colspec"]
    assert spec["tensor-spec"] == {"dtype": "float32", "shape": [-1, 32, 96]}


def test_the_ui_url_opens_the_runs_table_in_a_view_with_the_test_metrics() -> None:
    url = ui.ui_url()  # the project's SQLite store: where `make ui` serves it
    experiment = mlflow.get_experiment_by_name(store.EXPERIMENT)
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
    assert ui.ui_url("http://127.0.0.1:5000") == url  # again: the same experiment and view


def test_runs_are_browsed_on_their_tracking_server_or_at_make_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ui.ui_base() == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.org/team/")
    assert ui.ui_base() == "https://mlflow.example.org/team"


def test_the_runs_link_line_names_make_ui_for_the_projects_store() -> None:
    experiment_id = store.use_project_store()
    line = ui.runs_link(experiment_id)
    assert line == f"runs: {ui.runs_page_url(ui.UI_BASE, experiment_id)} (serve them: `make ui`)"
    assert "mlflow.sharedViewState.test-metrics" in mlflow.get_experiment(experiment_id).tags


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


def logged_run(keras_file: Path) -> str:
    """A finished run holding a logged reconstruction model."""
    with mlflow.start_run() as run:
        registry.log_reconstruction_model(keras_file)
    return run.info.run_id


@pytest.mark.slow
def test_champion_moves_only_to_a_better_test_mse(tmp_path: Path) -> None:
    import keras

    store.use_project_store()
    keras_file = tmp_path / "tiny.keras"
    keras.Sequential([keras.Input((32, 96)), keras.layers.Dense(96, activation="sigmoid")]).save(keras_file)
    client = mlflow.MlflowClient()

    def champion() -> tuple[str, str]:
        version = client.get_model_version_by_alias(registry.REGISTERED_MODEL, registry.CHAMPION)
        return str(version.version), version.tags["test_mse"]

    first, worse, better = (logged_run(keras_file) for _ in range(3))
    assert registry.register_model(first, 0.010) == ("1", True)
    assert registry.register_model(worse, 0.020) == ("2", False)
    assert champion() == ("1", "0.01")
    assert registry.register_model(better, 0.005) == ("3", True)
    assert champion() == ("3", "0.005")
    assert registry.register_model(better, 0.005) == ("3", True)  # evaluated again: no new version
    assert len(client.search_model_versions(f"name = '{registry.REGISTERED_MODEL}'")) == 3

    served = mlflow.pyfunc.load_model(f"models:/{registry.REGISTERED_MODEL}@{registry.CHAMPION}")
    out = served.predict(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert out["reconstruction"].shape == (2, 32, 32, 3) and out["mse"].shape == (2,)
