"""Every tracking test runs in tmp_path with no MLflow or DVC settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest


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
