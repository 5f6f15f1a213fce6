"""Whether a tracking server answers, and a stage that will not start against one that does not.

On a throwaway SQLite store in tmp_path (tests/tracking/conftest.py)."""

from __future__ import annotations

import pytest

from lstm_ae.tracking import health
from tests.helpers.servers import answering


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
