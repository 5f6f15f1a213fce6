"""The one module that talks to MLflow: where runs are stored, what every run carries."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas
import requests
from matplotlib.figure import Figure
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from lstm_ae import hardware
from lstm_ae.atomic import atomic_dir, write_text
from lstm_ae.data.corruption import Corruption
from lstm_ae.errors import UserError
from lstm_ae.metrics import HEADLINE
from lstm_ae.metrics import MODEL as MODEL_SCORES
from lstm_ae.metrics import key as metric_key

log = logging.getLogger(__name__)

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
    fail with "table ... already exists" (2 or 3 of 4 in tests/test_tracking.py). Nor is
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


SERVER_PROBE_S = 5  # one /health request; a server that takes longer counts as down for this epoch
SERVER_START_WAIT_S = 5  # a stage's start tolerates a server that is just restarting
SERVER_WAIT_S = 300  # how long the end of training waits for a server to come back


class TrackingServerDown(UserError):
    """MLFLOW_TRACKING_URI names a tracking server that does not answer."""


# What MLflow's client raises once its retries against a server that does not answer are spent.
OUTAGE_ERRORS = (mlflow.exceptions.MlflowException, requests.exceptions.RequestException)


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one short line, for a one-line warning or error."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def server_trouble(uri: str, timeout_s: float = SERVER_PROBE_S) -> str | None:
    """Why the tracking server at ``uri`` cannot take requests now, in a few words; None if it can
    (its /health answers) or if ``uri`` is not a server (a SQLite file).

    One request, no retries: MLflow's client retries for about 4 minutes, which is what a stage's
    start and an epoch's end must not wait for. TLS is verified as MLflow's client does it.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
    verify = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or not insecure
    try:
        answer = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s, verify=verify)
    except requests.exceptions.Timeout:
        return f"no answer within {timeout_s:g} s"
    except requests.exceptions.ConnectionError as exc:
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    except requests.exceptions.RequestException as exc:
        return type(exc).__name__
    # A reverse proxy answers 502/503 while MLflow behind it is down; 401/403 is a server that is up.
    return f"HTTP {answer.status_code}" if answer.status_code >= 500 else None


def trouble_after_waiting(uri: str, wait_s: float, poll_s: float) -> str | None:
    """What is wrong with the server at ``uri`` after asking every ``poll_s`` for up to
    ``wait_s`` seconds; None as soon as it answers (at once for a local store)."""
    deadline = time.monotonic() + wait_s
    while (trouble := server_trouble(uri)) is not None and time.monotonic() < deadline:
        time.sleep(poll_s)
    return trouble


def require_tracking_server(wait_s: float = SERVER_START_WAIT_S) -> None:
    """Fail in one line, before any work, if MLFLOW_TRACKING_URI names a server that does not answer
    within ``wait_s``.

    Otherwise MLflow's client retries for about 4 minutes and the stage ends in a traceback:
    train before its first epoch, evaluate after all its work.
    """
    uri = tracking_uri()
    if (trouble := trouble_after_waiting(uri, wait_s, poll_s=1)) is not None:
        raise TrackingServerDown(
            f"the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) does not answer ({trouble}); "
            "start it (`make tracking-server`, see docs/tracking-server.md), "
            "or unset MLFLOW_TRACKING_URI to log to the project's mlflow.db"
        )


# Not MLflow's own mlflow.source.git.commit alone: it follows sys.argv[0] (nothing for the `lstm-ae`
# script in the git-ignored .venv, nor for MlflowClient.create_run's study runs) and never says -dirty.
def git_commit(root: Path) -> str | None:
    """The commit the code ran from, with ``-dirty`` when tracked files were modified."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def run_tags(archive_md5: str) -> dict[str, str]:
    """Tags that tie a run to its code, its data, its DVC experiment and the device it trains on."""
    tags = {"data_md5": archive_md5, "device": hardware.training_device()}
    commit = git_commit(Path.cwd())
    if commit:
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
        tags["git_commit"] = commit
    if exp_name := os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = exp_name
    return tags


def task_tags(corruption: Corruption, family: str | None = None) -> dict[str, str]:
    """Which task a run learned, how its input was corrupted and (given) which model family
    learned it, searchable in the MLflow UI."""
    tags = {"task": corruption.task, "corruption": corruption.describe()}
    return tags if family is None else {**tags, "family": family}


def run_name() -> str | None:
    """The DVC experiment's name when run by `dvc exp run`, so both UIs show the same name."""
    return os.environ.get("DVC_EXP_NAME")


def flatten_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """{'train': {'batch_size': 128}} -> {'train.batch_size': 128}: the keys `dvc exp run -S` takes.

    pandas.json_normalize does the flattening; tuples become lists, as params.yaml writes them.
    """
    rows = pandas.json_normalize(dict(params), sep=".").to_dict(orient="records")
    return {key: list(v) if isinstance(v, tuple) else v for key, v in (rows[0] if rows else {}).items()}


# Not mlflow.keras.MlflowCallback: Keras's names (loss, not train_loss), 0-based steps, async, no epoch times.
class EpochLogger(keras.callbacks.Callback):
    """Logs train_loss, val_loss and the epoch's wall and CPU time to the active MLflow run after
    each epoch.

    CPU time (all of this process's threads) is the work done; on a shared or throttled machine
    wall time for the same epoch can swing several-fold (benchmarks/throughput.py measured up
    to 4.6x here) while CPU time stays put, so comparing runs by CPU time is the fair test.

    A tracking server that does not answer (restarting, say) neither stops nor stalls training:
    the epoch's metrics are kept, with their step and time, and sent with a later epoch's once
    the server answers, at the latest when training ends, which waits up to SERVER_WAIT_S for
    it. Sent at once, they held training until the server answered again, and failed the run
    when that took longer than MLflow's client retries (about 4 minutes). A server still down
    after that wait fails a tuning trial; the train stage keeps the metrics on disk instead.
    """

    def __init__(self, keep_after_outage: bool = False) -> None:
        """``keep_after_outage``: a server still down when training ends is no error; the caller
        keeps :attr:`unsent` (see :func:`send_or_keep`). Otherwise it raises TrackingServerDown
        (a tuning trial, which has no model worth keeping)."""
        super().__init__()
        self._kept: list[mlflow.entities.Metric] = []
        self._run_id = ""
        self._keep_after_outage = keep_after_outage
        self.trouble: str | None = None  # why the server did not take the kept metrics by the end

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._started, self._cpu_started = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        logs = logs or {}
        metrics = {
            "epoch_seconds": time.perf_counter() - self._started,
            "epoch_cpu_seconds": time.process_time() - self._cpu_started,
        }
        if "loss" in logs:
            metrics["train_loss"] = float(logs["loss"])
        if "val_loss" in logs:
            metrics["val_loss"] = float(logs["val_loss"])
        self._run_id = mlflow.active_run().info.run_id
        now = int(time.time() * 1000)
        self._kept += [mlflow.entities.Metric(key, value, now, epoch + 1) for key, value in metrics.items()]
        uri = mlflow.get_tracking_uri()
        trouble = server_trouble(uri)
        if trouble is None:
            try:
                self._send()
                return
            except OUTAGE_ERRORS as exc:
                trouble = first_line(exc)
        if len({metric.step for metric in self._kept}) == 1:  # the first epoch it missed: say so once
            log.warning(
                "MLflow tracking server %s: %s; training goes on, the metrics of epoch %d and later are "
                "kept and sent once it answers",
                uri,
                trouble,
                epoch + 1,
            )

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        """Send what is still kept, waiting up to SERVER_WAIT_S for the server to answer."""
        if not self._kept:
            return
        uri = mlflow.get_tracking_uri()
        if (trouble := trouble_after_waiting(uri, SERVER_WAIT_S, poll_s=2)) is None:
            try:
                self._send()
                return
            except OUTAGE_ERRORS as exc:
                trouble = first_line(exc)
        if not self._keep_after_outage:
            raise TrackingServerDown(
                f"the MLflow tracking server at {uri} has not answered for {SERVER_WAIT_S} s ({trouble}); "
                f"the metrics of epoch(s) {self._kept_epochs()} are not logged"
            )
        self.trouble = f"no answer for {SERVER_WAIT_S:g} s: {trouble}"

    @property
    def unsent(self) -> list[mlflow.entities.Metric]:
        """The epochs' metrics the server has not taken (all sent: empty)."""
        return list(self._kept)

    def _send(self) -> None:
        """Log every kept metric in one call (MLflow splits large batches); forget them once sent."""
        mlflow.MlflowClient().log_batch(self._run_id, metrics=self._kept)
        if len({metric.step for metric in self._kept}) > 1:
            log.info("MLflow tracking server answers again: sent the kept epochs %s", self._kept_epochs())
        self._kept = []

    def _kept_epochs(self) -> str:
        steps = sorted({metric.step for metric in self._kept})
        return f"{steps[0]}-{steps[-1]}" if len(steps) > 1 else str(steps[0])


def log_new_params(params: Mapping[str, Any]) -> None:
    """Log the params the active run lacks. `mlflow run -P key=value` logs each -P value on the run
    it creates (as it passed it to the shell: a list in quotes), and MLflow refuses to log a param
    twice with another value; the stage then used the same value, read from that option."""
    run_id = mlflow.active_run().info.run_id
    logged = mlflow.MlflowClient().get_run(run_id).data.params
    mlflow.log_params({key: value for key, value in params.items() if key not in logged})


def start_training_run(run_name: str | None, tags: Mapping[str, str]) -> mlflow.ActiveRun:
    """A run that also samples this machine's CPU, memory, disk and network use as ``system/``
    metrics, so a slow run can be told apart from a busy machine.

    MLflow samples every 10 s (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL changes it) in a thread that
    ends with the run; a run shorter than one interval records no sample.

    During a tracking-server outage the sampler asks the server for the run at every sample, and
    MLflow's client retries each ask with a warning line (seven a sample), until the sampler gives
    up with one more: all noise beside EpochLogger's one warning, so it is silenced. The sampler
    then records nothing more for that run.
    """
    logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)  # start/stop notes, every run
    logging.getLogger("urllib3.connectionpool").addFilter(_not_from_the_sampler)  # adding twice: once
    return mlflow.start_run(run_name=run_name, tags=dict(tags), log_system_metrics=True)


def _not_from_the_sampler(record: logging.LogRecord) -> bool:
    """False for the log records of MLflow's system-metrics thread (named so by MLflow)."""
    return record.threadName != "SystemMetricsMonitor"


def log_training_data(path: Path, archive_md5: str, x_train: np.ndarray) -> None:
    """Record the processed data file as the active run's training input, with the source
    archive's md5 as its digest: the Datasets column and the run page then name what it learned.

    A metadata-only dataset: nothing is read or hashed again, and it states only what holds for
    every split of that archive (the split sizes are the run's n_train and n_val params).
    """
    schema = Schema([TensorSpec(x_train.dtype, (-1, *x_train.shape[1:]), "x_train")])
    dataset = MetaDataset(
        LocalArtifactDatasetSource(str(path)), name=path.stem, digest=archive_md5, schema=schema
    )
    mlflow.log_input(dataset, context="training")


def log_figures(figures: Mapping[str, Figure], folder: str) -> None:
    """Log matplotlib figures as PNG images under ``folder`` in the active run."""
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"{folder}/{name}.png")


# Imports a served model needs besides the package itself (which travels as code) and TensorFlow,
# which is pinned as the build installed here (hardware.tensorflow_requirement).
SERVING_REQUIREMENTS = ("keras", "mlflow", "numpy", "scikit-learn", "scikit-image")
REGISTERED_MODEL = "cifar10-lstm-autoencoder"
REGISTERED_RESTORER = "cifar10-lstm-restorer"  # model.family restorer
REGISTERED_SWEEP = "cifar10-lstm-sweep-autoencoder"  # model.family sweep_ae
CHAMPION = "champion"


def log_reconstruction_model(keras_file: Path) -> None:
    """Log the saved Keras file as a pyfunc (``serving.ReconstructionModel``) named "model".

    The lstm_ae package travels with it (code_paths) and the requirements are pinned to what is
    installed here, so ``mlflow models serve`` works outside this checkout too; listing them
    also spares MLflow's slow requirement inference (it would load TensorFlow in a subprocess).
    """
    mlflow.pyfunc.log_model(name="model", **_reconstruction_model(keras_file))


def save_reconstruction_model(keras_file: Path, folder: Path) -> None:
    """The same model as an MLflow model folder in the project (models/served, a DVC output), so a
    clone that pulls it from the team's DVC remote serves it (`mlflow models serve -m models/served`)
    without the MLflow store it was trained in. Written whole or not at all."""
    with atomic_dir(folder) as tmp:
        mlflow.pyfunc.save_model(tmp, **_reconstruction_model(keras_file))


def serving_requirements() -> list[str]:
    """The served model's pip requirements: the versions installed here, TensorFlow's build included."""
    pinned = [f"{name}=={importlib.metadata.version(name)}" for name in SERVING_REQUIREMENTS]
    return [hardware.tensorflow_requirement(), *pinned]


def _reconstruction_model(keras_file: Path) -> dict[str, Any]:
    """What the logged and the saved model are made of; models from code, so no pickle."""
    return {
        "python_model": str(Path(__file__).parent / "serving" / "model_code.py"),
        "artifacts": {"keras_model": str(keras_file)},
        "code_paths": [str(Path(__file__).parent)],
        "pip_requirements": serving_requirements(),
    }


def registered_name(corruption: Corruption, family: str = "autoencoder") -> str:
    """One registry entry per model family, task and strength, so `champion` only compares like
    with like: a denoiser's test MSE says nothing about a plain autoencoder's, nor a restorer's
    about a bottlenecked model's. The autoencoder keeps the names it had before the restorer."""
    name = {"restorer": REGISTERED_RESTORER, "sweep_ae": REGISTERED_SWEEP}.get(family, REGISTERED_MODEL)
    if corruption.is_identity:
        return name
    return f"{name}-{corruption.task}-sigma{corruption.strength:g}"


def register_model(run_id: str, test_mse: float, name: str = REGISTERED_MODEL) -> tuple[str, bool]:
    """Register the run's model (once per run) as ``name`` with its test MSE as a version tag, and
    move the `champion` alias to it only if it beats the current champion's test MSE.

    Returns (version, whether it is now the champion).
    """
    client = mlflow.MlflowClient()
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = existing[0]
        client.set_model_version_tag(name, version.version, "test_mse", repr(test_mse))
    else:
        logged = mlflow.search_logged_models(
            filter_string=f"source_run_id = '{run_id}' AND name = 'model'",
            max_results=1,
            output_format="list",
        )
        if not logged:
            raise mlflow.exceptions.MlflowException(f"run {run_id} has no logged model named 'model'")
        version = mlflow.register_model(logged[0].model_uri, name, tags={"test_mse": repr(test_mse)})
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
        best = float(champion.tags.get("test_mse", "inf"))
        is_same = str(champion.version) == str(version.version)
    except mlflow.exceptions.MlflowException:  # no champion yet
        best, is_same = math.inf, False
    crowned = is_same or test_mse < best
    if crowned and not is_same:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    return str(version.version), crowned


def resume_or_start(run_id: str | None, **start_kwargs: Any) -> mlflow.ActiveRun:
    """Re-open the training run so evaluation lands in it; start a fresh run if it is gone.

    What an outage kept of that run is sent first, so the run is whole (its model logged, to be
    registered) before evaluation adds to it.
    """
    if run_id:
        send_unsent_runs(run_id)
        try:
            mlflow.get_run(run_id)
            return mlflow.start_run(run_id=run_id)
        except mlflow.exceptions.MlflowException:
            log.warning("MLflow run %s is not in %s; logging to a new run", run_id, tracking_uri())
    return mlflow.start_run(**start_kwargs)


def open_parent_run(
    experiment_id: str, name: str, earlier_run_id: str | None, tags: Mapping[str, str]
) -> tuple[str, bool]:
    """The run that holds a study: the study's earlier one, or a new one.

    Returns (run id, new): a new run still needs the study's params. A reopened run is marked
    RUNNING again while trials are added.
    """
    client = mlflow.MlflowClient()
    if earlier_run_id:
        try:
            client.get_run(earlier_run_id)
            client.update_run(earlier_run_id, status="RUNNING")
            return earlier_run_id, False
        except mlflow.exceptions.MlflowException:
            log.warning(
                "the study's MLflow run %s is not in %s; starting a new one", earlier_run_id, tracking_uri()
            )
    run = client.create_run(experiment_id, run_name=name, tags=dict(tags))
    return run.info.run_id, True


def point_to_study(launched_run_id: str, parent_run_id: str, experiment_id: str) -> None:
    """Note on the run `mlflow run -e tune` made where the study went instead: a study keeps one
    parent run in the project's experiment across every command that continues it, wherever
    `mlflow run` put its own run (MLflow's Default experiment, without --experiment-name)."""
    note = f"The study's trials are in run {parent_run_id} of experiment {experiment_id}."
    mlflow.MlflowClient().set_tag(launched_run_id, "mlflow.note.content", note)


@contextlib.contextmanager
def child_run(
    parent_run_id: str, experiment_id: str, name: str, tags: Mapping[str, str]
) -> Iterator[mlflow.ActiveRun]:
    """A run nested under ``parent_run_id``; the caller ends it with :func:`end_active_run`.

    The parent is named by tag rather than made the active run, so parallel worker processes
    can all nest their runs under one parent.
    """
    run = mlflow.start_run(
        experiment_id=experiment_id, run_name=name, tags={MLFLOW_PARENT_RUN_ID: parent_run_id, **tags}
    )
    try:
        yield run
    finally:
        if mlflow.active_run() is not None:  # the caller did not end it: an unexpected exit
            mlflow.end_run(status="FAILED")


@contextlib.contextmanager
def ended_as_it_failed() -> Iterator[None]:
    """Inside an active run: Ctrl-C or SIGTERM ends it as KILLED, an exception as FAILED with an
    `error` tag. MLflow's own exit would say FAILED for both, without the reason.

    Ending the run must not hide why it failed: with the tracking server down, ending it would
    retry for about 4 minutes and then chain MLflow's traceback to the real error, so the run is
    left as it is on the server instead (still RUNNING there) and the real error goes on alone.
    """
    try:
        yield
    except KeyboardInterrupt:
        _end_failed_run("KILLED", {})
        raise
    except Exception as exc:
        _end_failed_run("FAILED", {"error": f"{type(exc).__name__}: {exc}"[:500]})
        raise


def _end_failed_run(status: str, tags: Mapping[str, str]) -> None:
    """End the active run with ``status`` and ``tags`` if its store takes it; else leave it."""
    if mlflow.active_run() is None:
        return
    uri = mlflow.get_tracking_uri()
    if (trouble := server_trouble(uri)) is None:
        try:
            mlflow.set_tags(dict(tags))
            mlflow.end_run(status=status)
            return
        except OUTAGE_ERRORS as exc:
            trouble = first_line(exc)
    log.warning("MLflow tracking server %s: %s; the run stays RUNNING there", uri, trouble)
    leave_active_run()


def leave_active_run() -> None:
    """Forget this process's active run without a word to its store, which does not answer.

    mlflow.end_run would tell the server (and retry for about 4 minutes before failing), and so
    would MLflow's exit hook for a run still active; the system-metrics sampler is told to stop
    without a last send. MLflow has no public call for this, hence its module's own records.
    """
    from mlflow.environment_variables import MLFLOW_RUN_ID
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    if not stack:
        return
    run = stack.pop()
    MLFLOW_RUN_ID.unset()
    monitor = fluent.run_id_to_system_metrics_monitor.pop(run.info.run_id, None)
    if monitor is not None:
        monitor._shutdown_event.set()  # its daemon thread ends at its next sample, sending nothing


def end_active_run(status: str, metrics: Mapping[str, float], tags: Mapping[str, str]) -> None:
    """Log final metrics and tags, then end the active run with an explicit MLflow status."""
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    mlflow.set_tags(dict(tags))
    mlflow.end_run(status=status)


def end_run(run_id: str, status: str, tags: Mapping[str, str]) -> None:
    """End a run from outside the process that ran it (which was killed), with tags saying why."""
    client = mlflow.MlflowClient()
    client.log_batch(run_id, tags=[mlflow.entities.RunTag(k, v[:500]) for k, v in tags.items()])
    client.set_terminated(run_id, status)


# --- what a tracking-server outage kept of a training run -------------------------------------

UNSENT_RUNS = Path("models/unsent-runs")  # under the project root, one folder a run: kept until sent
SEND_COMMAND = "lstm-ae send-runs"
RECORD = "run.json"


@dataclasses.dataclass
class Unsent:
    """What a run has still to send to its store: metric points, files (each with the artifact
    folder it goes to) and the Keras file to log as the run's model."""

    run_id: str
    metrics: list[mlflow.entities.Metric]
    files: dict[Path, str]
    model: Path | None = None


def metric_points(values: Mapping[str, float], step: int = 0) -> list[mlflow.entities.Metric]:
    """``values`` as metric points stamped now, as mlflow.log_metrics would log them."""
    now = int(time.time() * 1000)
    return [mlflow.entities.Metric(key, float(value), now, step) for key, value in values.items()]


def send_or_keep(unsent: Unsent, trouble: str | None = None) -> Path | None:
    """Send what the active training run has left to log; if its tracking server does not take it
    (``trouble``: it did not answer when training ended), keep it on disk instead and leave the
    run in this process without a word to the server. The kept folder, or None if all was sent.

    Before, the stage then failed in a chain of tracebacks and the trained model was thrown away.
    """
    uri = mlflow.get_tracking_uri()
    if trouble is None:
        try:
            _send(unsent, uri)
            return None
        except OUTAGE_ERRORS as exc:
            if (trouble := server_trouble(uri)) is None:  # the server answers: not an outage
                raise exc from None
    folder = _keep(unsent, uri, trouble)
    leave_active_run()
    return folder


def kept_note(folder: Path) -> str:
    """The one line that ends a stage whose run was kept: what, where, and how to send it."""
    record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    return (
        f"the MLflow tracking server at {record['tracking_uri']} did not take run {record['run_id']} "
        f"({record['reason']}); its metrics, figures and model are kept in {_shown(folder)} "
        f"(the stage's outputs are written as usual); send them once it answers: `{SEND_COMMAND}`"
    )


def send_unsent_runs(run_id: str | None = None) -> int:
    """Send the runs that outages kept (only ``run_id``'s, if given), each to the store it was
    logging to, and forget each once it is all there; the number sent. `lstm-ae send-runs`."""
    root = project_root() / UNSENT_RUNS
    folders = sorted(path.parent for path in root.glob(f"{run_id or '*'}/{RECORD}"))
    if not folders and run_id is None:
        log.info("no run to send: %s holds none", _shown(root))
    for folder in folders:
        _send_kept(folder)
    return len(folders)


def _send(unsent: Unsent, uri: str, sent: Callable[[Unsent], None] = lambda _: None) -> None:
    """Send each part of ``unsent`` to the run in ``uri``, calling ``sent`` after each: a kept
    run's record then always names only what is still to send, however far a new outage lets
    this get (a metric point sent twice is stored once)."""
    client = mlflow.MlflowClient(uri)
    if unsent.metrics:
        client.log_batch(unsent.run_id, metrics=unsent.metrics)
        unsent.metrics = []
        sent(unsent)
    for path, folder in list(unsent.files.items()):
        client.log_artifact(unsent.run_id, str(path), folder)
        del unsent.files[path]
        sent(unsent)
    if unsent.model is not None:
        with _run_active(unsent.run_id, uri):
            log_reconstruction_model(unsent.model)
        unsent.model = None
        sent(unsent)


@contextlib.contextmanager
def _run_active(run_id: str, uri: str) -> Iterator[None]:
    """``run_id`` as the active run in ``uri`` (MLflow logs a model only to the active run): as it
    is, or reopened and ended FINISHED, the tracking URI put back after."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=run_id):
            yield
    finally:
        mlflow.set_tracking_uri(before)


def _keep(unsent: Unsent, uri: str, reason: str) -> Path:
    """Write ``unsent`` to models/unsent-runs/<run id>/ with copies of its files, whole or not at
    all; it lives in the project root, so a queued experiment's temporary copy cannot take it along."""
    folder = project_root() / UNSENT_RUNS / unsent.run_id
    with atomic_dir(folder) as tmp:
        files = {}
        for path, artifact_folder in unsent.files.items():
            copy = Path("files", artifact_folder, path.name)
            (tmp / copy).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / copy)
            files[copy] = artifact_folder
        if unsent.model is not None:
            shutil.copyfile(unsent.model, tmp / "model.keras")
        kept = Unsent(
            unsent.run_id, unsent.metrics, files, None if unsent.model is None else Path("model.keras")
        )
        (tmp / RECORD).write_text(_record(kept, uri, reason), encoding="utf-8")
    return folder


def _record(unsent: Unsent, uri: str, reason: str) -> str:
    """The kept run as JSON, its paths relative to its folder."""
    record = {
        "run_id": unsent.run_id,
        "tracking_uri": uri,
        "reason": reason,
        "metrics": [[m.key, m.value, m.timestamp, m.step] for m in unsent.metrics],
        "files": {str(path): folder for path, folder in unsent.files.items()},
        "model": None if unsent.model is None else str(unsent.model),
    }
    return json.dumps(record, indent=1) + "\n"


def _send_kept(folder: Path) -> None:
    """Send one kept run, then end it FINISHED and remove its folder; one line if its server
    still does not answer, the folder then left as it is."""
    record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    uri = record["tracking_uri"]
    if (trouble := server_trouble(uri)) is not None:
        raise TrackingServerDown(
            f"the MLflow tracking server at {uri} does not answer ({trouble}); run {record['run_id']} "
            f"stays kept in {_shown(folder)}: run `{SEND_COMMAND}` again once it answers"
        )
    unsent = Unsent(
        record["run_id"],
        [mlflow.entities.Metric(*point) for point in record["metrics"]],
        {folder / path: target for path, target in record["files"].items()},
        None if record["model"] is None else folder / record["model"],
    )

    def sent(left: Unsent) -> None:
        relative = {path.relative_to(folder): target for path, target in left.files.items()}
        model = None if left.model is None else left.model.relative_to(folder)
        remaining = dataclasses.replace(left, files=relative, model=model)
        write_text(folder / RECORD, _record(remaining, uri, record["reason"]))

    client = mlflow.MlflowClient(uri)
    try:
        _send(unsent, uri, sent)
        client.set_terminated(unsent.run_id, "FINISHED")
        experiment_id = client.get_run(unsent.run_id).info.experiment_id
    except OUTAGE_ERRORS as exc:
        raise TrackingServerDown(
            f"sending run {record['run_id']} to {uri} failed ({first_line(exc)}); what is left of it stays "
            f"kept in {_shown(folder)}: run `{SEND_COMMAND}` again once the server answers"
        ) from None
    shutil.rmtree(folder)
    log.info("sent the kept run %s to %s; %s", unsent.run_id, uri, runs_link(experiment_id, uri))


def _shown(path: Path) -> Path:
    """``path`` relative to the working folder where it lies below it, as a user would type it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


UI_BASE = "http://127.0.0.1:5000"  # where `make ui` serves the project's store
RUNS_VIEW_KEY = "test-metrics"
TEST_METRICS = tuple(metric_key(MODEL_SCORES, stat) for stat in HEADLINE)


def save_runs_view(experiment_id: str, uri: str | None = None) -> None:
    """Store a runs-table view on the experiment, as the MLflow UI's own "Share" button does (an
    experiment tag that the ``viewStateShareKey`` URL parameter names): best test MSE first, with
    the test metrics and the task shown. It goes to the store the runs log to (``uri``, default the
    current tracking URI): a server whose experiment lacks it opens the link on MLflow's GenAI
    overview with "share key test-metrics does not exist".

    MLflow keeps the columns a user picks in the browser only, so a URL can carry them this way alone.
    """
    # Only these beside the run name, date and duration: wider columns would push the metrics off screen.
    columns = [f"metrics.`{name}`" for name in TEST_METRICS] + ["tags.`task`"]
    state = {"orderByKey": "metrics.`test_mse`", "orderByAsc": True, "selectedColumns": columns}
    now = int(time.time() * 1000)
    view = {"name": "test metrics", "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    mlflow.MlflowClient(uri).set_experiment_tag(
        experiment_id, f"mlflow.sharedViewState.{RUNS_VIEW_KEY}", json.dumps(view)
    )


def ui_base(uri: str | None = None) -> str:
    """Where the runs of ``uri`` (default: the project's tracking URI) are browsed: a tracking
    server serves its own UI; the project's SQLite store is served by `make ui` (`mlflow ui`)."""
    uri = uri or tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_BASE


def runs_page_url(base: str, experiment_id: str) -> str:
    """The runs table of the experiment in the saved view. workflowType=machine_learning: without
    it MLflow 3 opens an experiment on its GenAI overview, where no run is listed."""
    query = f"workflowType=machine_learning&viewStateShareKey={RUNS_VIEW_KEY}"
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def ui_url(base: str | None = None) -> str:
    """What `make ui` prints: the project's runs table, its view saved first in the store the runs
    log to; ``base`` defaults to where that store is browsed (:func:`ui_base`)."""
    experiment_id = use_project_store()
    save_runs_view(experiment_id)
    return runs_page_url(base or ui_base(), experiment_id)


def runs_link(experiment_id: str, uri: str | None = None) -> str:
    """One line saying where to see the runs of ``uri`` (default: the current tracking URI), for
    the end of a stage: the runs table in the saved view (saved now; a server that stopped
    answering just now only costs the view), and for the project's SQLite store the command that
    serves it. MLflow's own "View experiment" link opens the GenAI overview, without the runs."""
    uri = uri or mlflow.get_tracking_uri()
    if server_trouble(uri) is None:
        with contextlib.suppress(*OUTAGE_ERRORS):
            save_runs_view(experiment_id, uri)
    url = runs_page_url(ui_base(uri), experiment_id)
    return f"runs: {url}" + ("" if uri.startswith(("http://", "https://")) else " (serve them: `make ui`)")
