"""The per-epoch curves: logged each epoch, kept through a server outage and sent once it answers.

On a throwaway SQLite store in tmp_path (tests/tracking/conftest.py)."""

from __future__ import annotations

import time

import mlflow
import pytest

from lstm_ae.tracking import curves, health, store


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
