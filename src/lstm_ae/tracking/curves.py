"""Per-epoch curves (losses, epoch times) logged as training goes, kept through a server outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import keras
import mlflow

from lstm_ae.tracking import health

log = logging.getLogger(__name__)


SERVER_WAIT_S = 300  # how long the end of training waits for a server to come back


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
        trouble = health.server_trouble(uri)
        if trouble is None:
            try:
                self._send()
                return
            except health.OUTAGE_ERRORS as exc:
                trouble = health.first_line(exc)
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
        if (trouble := health.trouble_after_waiting(uri, SERVER_WAIT_S, poll_s=2)) is None:
            try:
                self._send()
                return
            except health.OUTAGE_ERRORS as exc:
                trouble = health.first_line(exc)
        if not self._keep_after_outage:
            raise health.TrackingServerDown(
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
