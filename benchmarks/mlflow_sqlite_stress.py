"""Do concurrent writers lose runs in the SQLite MLflow store? (docs/reliability.md: Under load)

Several processes writing to one SQLite MLflow store at once, with and without a busy timeout: the
busy-timeout table of docs/reliability.md (Under load).

MLflow sets `PRAGMA busy_timeout = 20000` on every SQLite session: a writer that finds the
database locked waits up to 20 s instead of failing with "database is locked". This script
shows what that buys: the same load once as MLflow ships it and once with the timeout at 0.

    python benchmarks/mlflow_sqlite_stress.py --workers 4 --runs 10 --steps 50

Each worker creates runs, logs a metric per step and ends each run, as a tuning worker does per
epoch. Prints one JSON line per mode: per-worker error counts, runs found afterwards, wall time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

EXPERIMENT = "stress"


def without_busy_timeout() -> None:
    """Make MLflow's SQLite sessions fail at once on a lock, as SQLite does by default."""
    import mlflow.store.db.utils as db_utils
    import sqlalchemy

    class Sql:
        def __getattr__(self, name: str) -> object:
            return getattr(sqlalchemy.sql, name)

        def text(self, statement: str) -> object:
            return sqlalchemy.sql.text(statement.replace("busy_timeout = 20000", "busy_timeout = 0"))

    db_utils.sql = Sql()


def write_runs(
    uri: str, worker: int, runs: int, steps: int, busy_timeout: bool, errors: multiprocessing.Queue
) -> None:
    import mlflow

    if not busy_timeout:
        without_busy_timeout()
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    failed = []
    for _ in range(runs):
        try:
            run = client.create_run(experiment_id, tags={"worker": str(worker)})
            for step in range(steps):
                client.log_metric(run.info.run_id, "val_loss", 1.0 / (step + 1), step=step)
            client.set_terminated(run.info.run_id)
        except Exception as exc:  # noqa: BLE001 - counted and reported, the point of the benchmark
            failed.append(str(exc).splitlines()[0][:200])
    errors.put((worker, failed))


def stress(workers: int, runs: int, steps: int, busy_timeout: bool) -> dict:
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        client = mlflow.MlflowClient(tracking_uri=uri)
        experiment_id = client.create_experiment(EXPERIMENT)  # tables made before the workers start
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        started = time.perf_counter()
        processes = [
            context.Process(target=write_runs, args=(uri, w, runs, steps, busy_timeout, queue))
            for w in range(workers)
        ]
        for process in processes:
            process.start()
        results = dict(queue.get() for _ in processes)
        for process in processes:
            process.join()
        wall = time.perf_counter() - started
        found = client.search_runs([experiment_id], max_results=10_000)
    messages = sorted({m for failed in results.values() for m in failed})
    return {
        "busy_timeout": "MLflow default (20 s)" if busy_timeout else "0 s",
        "workers": workers,
        "runs_per_worker": runs,
        "steps_per_run": steps,
        "errors_per_worker": [len(results[w]) for w in range(workers)],
        "runs_found": len(found),
        "wall_s": round(wall, 1),
        "error_messages": messages[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    for busy_timeout in (True, False):
        print(json.dumps(stress(args.workers, args.runs, args.steps, busy_timeout)), flush=True)


if __name__ == "__main__":
    main()
