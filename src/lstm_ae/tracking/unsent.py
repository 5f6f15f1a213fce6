"""What a tracking-server outage kept of a training run, on disk until `lstm-ae send-runs` sends it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import mlflow

from lstm_ae.atomic import atomic_dir, write_text
from lstm_ae.tracking import health
from lstm_ae.tracking.registry import log_reconstruction_model
from lstm_ae.tracking.runs import leave_active_run
from lstm_ae.tracking.store import project_root
from lstm_ae.tracking.ui import runs_link

log = logging.getLogger(__name__)


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
        except health.OUTAGE_ERRORS as exc:
            if (trouble := health.server_trouble(uri)) is None:  # the server answers: not an outage
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
    if (trouble := health.server_trouble(uri)) is not None:
        raise health.TrackingServerDown(
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
    except health.OUTAGE_ERRORS as exc:
        raise health.TrackingServerDown(
            f"sending run {record['run_id']} to {uri} failed ({health.first_line(exc)}); what is left of it "
            f"stays kept in {_shown(folder)}: run `{SEND_COMMAND}` again once the server answers"
        ) from None
    shutil.rmtree(folder)
    log.info("sent the kept run %s to %s; %s", unsent.run_id, uri, runs_link(experiment_id, uri))


def _shown(path: Path) -> Path:
    """``path`` relative to the working folder where it lies below it, as a user would type it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path
