"""What an outage kept of a run: on disk whole, sent later, and kept again if the server is still down.

On a throwaway SQLite store in tmp_path (tests/tracking/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from lstm_ae.tracking import health, runs, store, unsent
from tests.helpers.servers import answering


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
