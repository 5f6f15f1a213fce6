"""Where to browse the runs: the MLflow UI's runs table in a saved view, and the link to it."""

from __future__ import annotations

import contextlib
import json
import time

import mlflow

from lstm_ae.metrics import HEADLINE
from lstm_ae.metrics import MODEL as MODEL_SCORES
from lstm_ae.metrics import key as metric_key
from lstm_ae.tracking import health
from lstm_ae.tracking.store import tracking_uri, use_project_store

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
    if health.server_trouble(uri) is None:
        with contextlib.suppress(*health.OUTAGE_ERRORS):
            save_runs_view(experiment_id, uri)
    url = runs_page_url(ui_base(uri), experiment_id)
    return f"runs: {url}" + ("" if uri.startswith(("http://", "https://")) else " (serve them: `make ui`)")
