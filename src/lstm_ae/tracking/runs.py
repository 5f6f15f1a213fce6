"""What every run carries (tags, params, data, figures) and how it starts, nests and ends."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas
from matplotlib.figure import Figure
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from lstm_ae import hardware
from lstm_ae.data.corruption import Corruption
from lstm_ae.tracking import health
from lstm_ae.tracking.store import tracking_uri

log = logging.getLogger(__name__)


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


def run_tags(archive_md5: str, *, trains: bool = True) -> dict[str, str]:
    """Tags that tie a run to its code, its data, its DVC experiment and the device it trains on.

    A run that trains nothing itself (a study's run: its trials train, in other processes) has no
    `device`: finding it would import TensorFlow into a process that otherwise never needs it.
    """
    tags = {"data_md5": archive_md5}
    if trains:
        tags["device"] = hardware.training_device()
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


def resume_or_start(run_id: str | None, **start_kwargs: Any) -> mlflow.ActiveRun:
    """Re-open the training run so evaluation lands in it; start a fresh run if it is gone.

    What an outage kept of that run is sent first, so the run is whole (its model logged, to be
    registered) before evaluation adds to it.
    """
    if run_id:
        from lstm_ae.tracking.unsent import send_unsent_runs  # unsent ends runs through this module

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
    if (trouble := health.server_trouble(uri)) is None:
        try:
            mlflow.set_tags(dict(tags))
            mlflow.end_run(status=status)
            return
        except health.OUTAGE_ERRORS as exc:
            trouble = health.first_line(exc)
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
