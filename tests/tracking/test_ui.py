"""Where the runs are browsed: the runs table in a saved view, on a server or at `make ui`.

On a throwaway SQLite store in tmp_path (tests/tracking/conftest.py)."""

from __future__ import annotations

import json

import mlflow
import pytest

from lstm_ae.tracking import store, ui


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
