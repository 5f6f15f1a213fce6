"""The project against an MLflow tracking server (`lstm-ae tracking-server`) on a throw-away
PostgreSQL, on loopback: `dvc repro`, a queued experiment, the registry, `mlflow models serve` and
the UI; a restart during training; a stage started with the server down; two clones tuning one
study; eight processes logging at once."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from optuna.trial import TrialState

from lstm_ae.model.saved import load_model
from lstm_ae.paths import HISTORY, LOSS_FIGURE, MODEL, RUN_INFO, SERVED_MODEL, TUNE_BEST, TUNE_SUMMARY
from lstm_ae.tracking import curves, health, runs, store, ui, unsent
from tests.helpers.mlflow_load import EPOCH_METRICS, check_store, log_runs
from tests.helpers.postgres import Cluster, require_postgres, throwaway_postgres
from tests.helpers.projects import cli_env, make_tiny_project
from tests.helpers.repos import tiny_project, tool_env
from tests.helpers.servers import TrackingServer, free_port, model_server, post_json
from tests.helpers.studies import assert_one_child_run_per_trial, load_study, make_project
from tests.test_ui import assert_runs_table, lstm_ae, printed_runs_link, render, ui_url

pytestmark = pytest.mark.slow

CHAMPION = "models:/cifar10-lstm-sweep-autoencoder@champion"  # the default family


@pytest.fixture(scope="module")
def postgres() -> Iterator[Cluster]:
    with throwaway_postgres(require_postgres()) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def server(postgres: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """Started as a user starts it, creating its database; stopped however the tests end."""
    folder = tmp_path_factory.mktemp("tracking-server")
    started = TrackingServer(postgres.url("mlflow"), folder / "artifacts", folder / "server.log", cli_env())
    started.start()
    try:
        yield started
    finally:
        started.stop()


def server_runs(server: TrackingServer, **tags: str) -> list[mlflow.entities.Run]:
    """The project experiment's runs on the server that carry all of ``tags``."""
    client = mlflow.MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name(store.EXPERIMENT)
    found = client.search_runs([experiment.experiment_id], max_results=1000)
    return [run for run in found if all(run.data.tags.get(k) == v for k, v in tags.items())]


# --- tuning across machines: two clones, one PostgreSQL study, one tracking server -----------------


@pytest.fixture(scope="module")
def clones(postgres: Cluster, server: TrackingServer, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two project folders, as on two machines, each running `lstm-ae tune` (and its worker
    processes) at the same moment on one new study. First in this module: they also race to
    create the experiment on the fresh server."""
    storage = postgres.create("optuna")
    projects = [
        make_project(
            tmp_path_factory.mktemp(name), n_trials=4, workers=1, storage=storage, study_name="clones"
        )
        for name in ("clone-a", "clone-b")
    ]
    env = {**cli_env(), "MLFLOW_TRACKING_URI": server.url}
    command = [sys.executable, "-m", "lstm_ae", "tune"]
    both = [subprocess.Popen(command, cwd=p, env=env, stderr=subprocess.PIPE, text=True) for p in projects]
    for process in both:
        _, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr
    return projects


def test_two_clones_tuning_one_study_record_each_trial_once_under_one_parent(
    clones: list[Path], postgres: Cluster, server: TrackingServer
) -> None:
    study = load_study(clones[0], "clones", postgres.url("optuna"))
    # Each command re-reads the study before each trial: 4 finished, plus at most the other's running one.
    assert 4 <= len(study.trials) <= 5
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    runs = server_runs(server, **{"optuna.study_name": "clones"})
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_name for r in parents] == ["study-clones"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert_one_child_run_per_trial(study, children, parents[0].info.run_id)
    assert parents[0].data.metrics["best_val_mse"] == pytest.approx(study.best_value)
    # Each command waited for the trial the other was running, so both report the same best.
    assert (clones[0] / TUNE_BEST).read_text() == (clones[1] / TUNE_BEST).read_text()
    assert f"trial {study.best_trial.number}," in (clones[0] / TUNE_BEST).read_text()
    summaries = [json.loads((clone / TUNE_SUMMARY).read_text()) for clone in clones]
    assert summaries[0]["best_trial"] == summaries[1]["best_trial"] == study.best_trial.number


# --- the pipeline, the registry, serving and the UI against the server ----------------------------


def on_server(project: Path, server: TrackingServer, *args: str) -> subprocess.CompletedProcess:
    env = {**tool_env(), "MLFLOW_TRACKING_URI": server.url}
    result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def pipeline(server: TrackingServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after `dvc repro` on a tiny archive, logging to the server."""
    project = tiny_project(tmp_path_factory.mktemp("project"), tmp_path_factory.mktemp("archive"))
    on_server(project, server, "dvc", "repro")
    return project


def repro_run(pipeline: Path, server: TrackingServer) -> mlflow.entities.Run:
    (run,) = [
        r for r in server_runs(server) if "test_mse" in r.data.metrics and "dvc_exp_name" not in r.data.tags
    ]
    return run


def test_repro_logs_to_the_server_which_keeps_the_artifacts_and_the_champion(
    pipeline: Path, server: TrackingServer
) -> None:
    run = repro_run(pipeline, server)
    assert run.info.status == "FINISHED"
    client = mlflow.MlflowClient(tracking_uri=server.url)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    # Artifacts go through the server to its --artifacts-destination: the project holds no store.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert "evaluate/reconstructions.png" in {
        f.path for f in client.list_artifacts(run.info.run_id, "evaluate")
    }
    assert any(server.artifacts.rglob("reconstructions.png"))
    assert not (pipeline / "mlflow.db").exists() and not (pipeline / "mlartifacts").exists()
    champion = client.get_model_version_by_alias("cifar10-lstm-sweep-autoencoder", "champion")
    assert champion.run_id == run.info.run_id


def test_a_queued_experiment_lands_on_the_server(pipeline: Path, server: TrackingServer) -> None:
    on_server(pipeline, server, "dvc", "exp", "run", "--queue", "-S", "train.max_epochs=1")
    on_server(pipeline, server, "dvc", "queue", "start", "-j", "1")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = on_server(pipeline, server, "dvc", "queue", "status").stdout
        if "Success" in status or "Failed" in status:
            break
        time.sleep(3)
    stop = ["dvc", "queue", "stop", "--kill"]
    subprocess.run(stop, cwd=pipeline, env=tool_env(), capture_output=True, check=False)
    assert "Success" in status, status
    (run,) = [r for r in server_runs(server) if r.data.params.get("train.max_epochs") == "1"]
    assert run.data.tags.get("dvc_exp_name") and "test_mse" in run.data.metrics
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")


def test_mlflow_models_serve_takes_the_champion_from_the_server(
    pipeline: Path, server: TrackingServer, tmp_path: Path
) -> None:
    env = {**tool_env(), "MLFLOW_TRACKING_URI": server.url}
    with model_server(CHAMPION, pipeline, env, tmp_path / "serve.log", ready_s=300) as base:
        images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        status, answer = post_json(f"{base}/invocations", {"inputs": images.tolist()})
    assert status == 200, answer
    assert np.asarray(answer["predictions"]["reconstruction"]).shape == (2, 32, 32, 3)


def test_the_servers_ui_shows_the_run_its_figure_and_the_study(
    pipeline: Path, clones: list[Path], server: TrackingServer
) -> None:
    """The checks of tests/test_ui.py, on the pages the tracking server itself serves."""
    run = repro_run(pipeline, server)
    page = f"{server.url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    dom = render(page)
    assert "test_mse" in dom and repr(run.data.metrics["test_mse"]) in dom
    dom = render(f"{page}/artifacts/evaluate/reconstructions.png")
    assert '<img alt="evaluate/reconstructions.png" src="blob:' in dom  # fetched through the server
    (study,) = server_runs(server, **{"mlflow.runName": "study-clones"})
    dom = render(f"{server.url}/#/experiments/{study.info.experiment_id}/runs/{study.info.run_id}")
    trials = server_runs(server, **{"mlflow.parentRunId": study.info.run_id})
    assert "best_val_mse" in dom and trials and all(t.info.run_name in dom for t in trials)


# A model of seconds, registered apart from the pipeline's (a subset suffix), so that its test MSE
# cannot take `champion` from the run test_repro_logs_to_the_server_... checks.
SMALL = {
    "model": {"encoder_widths": [8], "decoder_widths": [8], "head": "dense"},
    "preprocess": {"max_train_images": 96, "max_test_images": 16},
}


def test_the_runs_link_train_prints_opens_the_runs_table_on_the_server(
    server: TrackingServer, tmp_path: Path
) -> None:
    """Before, the link named `make ui`'s http://127.0.0.1:5000, and a server's experiment could lack
    the saved view: MLflow then opened its GenAI overview with "share key test-metrics does not
    exist". Now the view is saved where the run logs, and the link names the server."""
    project = make_tiny_project(tmp_path, train={"max_epochs": 2}, **SMALL)
    on = {"MLFLOW_TRACKING_URI": server.url}
    link = printed_runs_link(lstm_ae(project, "train", env=on, quiet=False).stderr)
    lstm_ae(project, "evaluate", env=on)
    run_id = json.loads((project / RUN_INFO).read_text())["run_id"]
    run = mlflow.MlflowClient(tracking_uri=server.url).get_run(run_id)
    assert link == ui.runs_page_url(server.url, run.info.experiment_id)
    assert ui_url(project, env=on) == link  # what `make ui` prints there
    assert not (project / "mlflow.db").exists()  # the view went to the server, not to a local store
    shot = tmp_path / "runs.png"
    assert_runs_table(render(link, shot), run)
    assert shot.stat().st_size > 20_000


# --- the server fails, training goes on -----------------------------------------------------------


@pytest.fixture
def logging_to(server: TrackingServer, monkeypatch: pytest.MonkeyPatch) -> TrackingServer:
    """This process's MLflow pointed at the server; what MLflow sets globally is undone after."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")  # set, then deleted: monkeypatch restores it after
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    return server


class Outage(keras.callbacks.Callback):
    """Stops the server at the end of epoch ``at`` (before the epoch is logged) and starts it again
    at once in another thread; a start takes seconds, tiny epochs milliseconds. Records which
    epochs ended while the server was down."""

    def __init__(self, server: TrackingServer, at: int) -> None:
        super().__init__()
        self.server, self.at = server, at
        self.down: list[int] = []
        self.back_at_ms = 0
        self.restart = threading.Thread(target=self._start)

    def _start(self) -> None:
        self.server.start()
        self.back_at_ms = int(time.time() * 1000)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.at:
            self.server.stop()
            self.restart.start()
        if health.server_trouble(self.server.url) is not None:
            self.down.append(epoch + 1)


@pytest.mark.parametrize("retries", [None, "1"], ids=["mlflow-default-retries", "outage-longer-than-retries"])
def test_a_server_restart_during_training_holds_no_epoch_up_and_loses_none(
    retries: str | None, logging_to: TrackingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix, epoch 2's metrics held training until the server was back, and an outage
    longer than MLflow's client retries (about 4 minutes by default; one retry here) failed the
    run. Now they are kept and sent once the server answers."""
    if retries:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", retries)
    store.use_project_store("restart")
    x = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    model.compile(optimizer="adam", loss="mse")
    outage = Outage(logging_to, at=2)
    try:
        with runs.start_training_run("restart", {}) as run, runs.ended_as_it_failed():
            callbacks = [outage, curves.EpochLogger()]  # the outage first: epoch 2 is not yet logged
            model.fit(x, x, epochs=6, validation_data=(x, x), verbose=0, callbacks=callbacks)
    finally:
        outage.restart.join()
    assert outage.down == [2, 3, 4, 5, 6]  # training went on while the server was down
    client = mlflow.MlflowClient()
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    for key in EPOCH_METRICS:
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2, 3, 4, 5, 6], key
        assert all(m.timestamp < outage.back_at_ms for m in history[1:]), (
            key
        )  # each kept with its epoch's time


# `lstm-ae train -q` as a user runs it, but the end of training waits 3 s for the server, not 5
# minutes, and the end of epoch 3 waits (before logging) until the test has stopped the server.
TRAIN_THROUGH_AN_OUTAGE = """
import sys, time
from pathlib import Path
from lstm_ae import cli
from lstm_ae.startup import import_quietly

curves = import_quietly("lstm_ae.tracking.curves")
from lstm_ae.tracking import health, store

curves.SERVER_WAIT_S = 3


class Outage(curves.EpochLogger):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == 3:
            Path("outage").touch()
            while health.server_trouble(store.tracking_uri()) is None:
                time.sleep(0.2)
        super().on_epoch_end(epoch, logs)


curves.EpochLogger = Outage
sys.exit(cli.main(["train", "-q"]))
"""


def test_an_outage_past_the_end_of_training_keeps_the_model_and_the_run_to_send_later(
    server: TrackingServer, tmp_path: Path
) -> None:
    """The server goes down at epoch 3 of 6 and is still down when training has waited for it.
    Before, `train` then failed in a chain of tracebacks (ending the failed run called the dead
    server too; 11 tracebacks on stderr with MLflow's retries cut to 0) and the model was never
    written. Now every output is written, what the run had left to log is kept, one line says so,
    and the kept run is sent whole once the server is back."""
    project = make_tiny_project(tmp_path, train={"max_epochs": 6, "patience": 100}, **SMALL)
    env = {**cli_env(), "MLFLOW_TRACKING_URI": server.url, "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}
    command = [sys.executable, "-c", TRAIN_THROUGH_AN_OUTAGE]
    training = subprocess.Popen(command, cwd=project, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (project / "outage").exists() and training.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        server.stop()
        _, stderr = training.communicate(timeout=300)
        assert training.returncode == 0, stderr
        run_id = json.loads((project / RUN_INFO).read_text())["run_id"]
        kept = project / unsent.UNSENT_RUNS / run_id
        said = [line for line in stderr.splitlines() if line.startswith(("WARNING", "ERROR", "error", "Tr"))]
        assert said == [
            (
                f"WARNING lstm_ae.tracking.curves: MLflow tracking server {server.url}: connection refused; "
                "training goes on, the metrics of epoch 3 and later are kept and sent once it answers"
            ),
            (  # the line the stage ends with
                f"WARNING lstm_ae.stages.train: the MLflow tracking server at {server.url} did not take run "
                f"{run_id} (no answer for 3 s: connection refused); its metrics, figures and model are kept "
                f"in models/unsent-runs/{run_id} (the stage's outputs are written as usual); send them once "
                "it answers: `lstm-ae send-runs`"
            ),
        ], stderr
        assert stderr.strip().endswith("`lstm-ae send-runs`") and "Traceback" not in stderr

        # The outputs, as after any training; the model file loads.
        assert load_model(project / MODEL).output_shape == (None, 32, 96)
        assert len((project / HISTORY).read_text().splitlines()) == 1 + 6
        assert (project / LOSS_FIGURE).stat().st_size > 0 and (project / SERVED_MODEL / "MLmodel").exists()
        record = json.loads((kept / "run.json").read_text())
        steps = {point[3] for point in record["metrics"] if point[0] == "val_loss"}
        assert steps == {3, 4, 5, 6} and {"best_epoch", "best_val_loss"} <= {p[0] for p in record["metrics"]}
        assert record["files"] == {"files/train/loss.png": "train"}
        assert (kept / record["model"]).read_bytes() == (project / MODEL).read_bytes()
    finally:
        if training.poll() is None:
            training.kill()
        if server.process is None:  # back for the send below and for the tests after this one
            server.start()

    send = "from lstm_ae.tracking import unsent; print(unsent.send_unsent_runs())"
    sent = subprocess.run(
        [sys.executable, "-c", send], cwd=project, env=cli_env(), capture_output=True, text=True, check=False
    )
    assert sent.returncode == 0 and sent.stdout.splitlines()[-1] == "1", sent.stderr
    assert not kept.exists()
    client = mlflow.MlflowClient(tracking_uri=server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "best_val_loss" in run.data.metrics
    for key in EPOCH_METRICS:
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == [1, 2, 3, 4, 5, 6], key
    assert [f.path for f in client.list_artifacts(run_id, "train")] == ["train/loss.png"]
    logged = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = 'model'"
    )
    assert len(logged) == 1


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_a_stage_started_with_the_server_down_fails_in_one_line_before_any_work(
    stage: str, tmp_path: Path
) -> None:
    """Before the fix, train retried for about 4 minutes and ended in a traceback; evaluate did all
    its work first (here: failed on the missing model instead)."""
    project = make_tiny_project(tmp_path, model={"encoder_widths": [16], "decoder_widths": [16]})
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "lstm_ae", stage],
        cwd=project,
        env={**cli_env(), "MLFLOW_TRACKING_URI": url},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    expected = (
        f"error: the MLflow tracking server at {url} (MLFLOW_TRACKING_URI) does not answer (connection "
        "refused); start it (`make tracking-server`, see docs/tracking-server.md), or unset "
        "MLFLOW_TRACKING_URI to log to the project's mlflow.db"
    )
    assert errors == [expected]
    assert not (project / "models").exists() and not (project / "reports").exists()


# --- load ----------------------------------------------------------------------------------------


def test_eight_processes_logging_at_once_through_the_server_lose_nothing(server: TrackingServer) -> None:
    """Bounded: 8 processes x 2 runs x 10 epochs of 4 metrics. benchmarks/mlflow_server_load.py
    measures more of the same next to SQLite."""
    experiment_id = mlflow.MlflowClient(tracking_uri=server.url).create_experiment("load")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(8, mp_context=context) as pool:
        barrier = manager.Barrier(8)  # all eight log from the moment the last is ready
        jobs = [pool.submit(log_runs, server.url, experiment_id, 2, 10, barrier) for _ in range(8)]
        results = [job.result(timeout=300) for job in jobs]
    assert [r["errors"] for r in results] == [[]] * 8
    assert sum(r["points"] for r in results) == 8 * 2 * 10 * len(EPOCH_METRICS)
    found = check_store(server.url, experiment_id, epochs=10)
    assert found == {"runs_found": 16, "runs_not_finished": 0, "incomplete_histories": 0}, json.dumps(found)
