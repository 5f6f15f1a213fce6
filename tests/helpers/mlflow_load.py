"""One process's share of a logging load on an MLflow store, as training and tuning processes log:
runs, each epoch's four metrics in one request, an end status. Imports MLflow only (not
TensorFlow), so that many processes start quickly."""

from __future__ import annotations

import os
import time
from typing import Any

EPOCH_METRICS = ("train_loss", "val_loss", "epoch_seconds", "epoch_cpu_seconds")


def log_runs(uri: str, experiment_id: str, runs: int, epochs: int, barrier: Any = None) -> dict:
    """Create ``runs`` runs, log ``epochs`` epochs of metrics to each and end it FINISHED.

    With ``barrier`` (a multiprocessing barrier) every process starts logging at once, after its
    start-up. Returns the errors (first line of each), the metric points sent and the seconds it took.
    """
    # MLflow 3.17's telemetry thread, failing to reach its server (no internet), removes an
    # environment variable while a request may be reading the environment for proxies: that
    # request fails with KeyError '_MLFLOW_TELEMETRY_SESSION_ID' (1 run of 80 in a load run).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking_uri=uri)
    client.get_experiment(experiment_id)  # connect (and for SQLite open the store) before the clock starts
    if barrier is not None:
        barrier.wait()
    started = time.perf_counter()
    errors, points = [], 0
    for _ in range(runs):
        try:
            run_id = client.create_run(experiment_id).info.run_id
            for epoch in range(1, epochs + 1):
                now = int(time.time() * 1000)
                metrics = [Metric(key, 1.0 / epoch, now, epoch) for key in EPOCH_METRICS]
                client.log_batch(run_id, metrics=metrics)
                points += len(metrics)
            client.set_terminated(run_id, "FINISHED")
        except Exception as exc:  # noqa: BLE001 - counted and reported: the point of a load test
            errors.append(str(exc).strip().splitlines()[0][:200])
    return {"errors": errors, "points": points, "seconds": time.perf_counter() - started}


def check_store(uri: str, experiment_id: str, epochs: int) -> dict:
    """What the store holds afterwards: runs found, runs not FINISHED, metric histories not complete."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.search_runs([experiment_id], max_results=10_000)
    steps = list(range(1, epochs + 1))
    incomplete = [
        (run.info.run_id, key)
        for run in found
        for key in EPOCH_METRICS
        if sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) != steps
    ]
    return {
        "runs_found": len(found),
        "runs_not_finished": sum(run.info.status != "FINISHED" for run in found),
        "incomplete_histories": len(incomplete),
    }
