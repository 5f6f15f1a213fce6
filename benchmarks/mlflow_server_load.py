"""Does the tracking server lose metrics under 8 writers? (docs/results.md: Tracking server under load)

Many processes logging to MLflow at once: through a tracking server on PostgreSQL, and to the
SQLite file that is the project's default, side by side in one run with the same load. Behind the
table of docs/results.md (Tracking server under load) and the failed first run in
docs/tracking-server.md (Under load).

    python benchmarks/mlflow_server_load.py --workers 8 --runs 5 --epochs 50 \
        --out benchmarks/results/mlflow_server_load-2026-12-02.json

Each process creates runs, logs each epoch's four metrics in one request (as EpochLogger does)
and ends each run; all processes start logging together at a barrier, after MLflow's import.
The server is `lstm-ae tracking-server` on loopback over a throw-away PostgreSQL cluster
(Debian's `postgresql` package, as the tests use it); each store starts empty. Afterwards every
run and every metric history is read back. Prints one JSON line per measurement and writes them
all, with the machine's load, to --out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.metadata
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The throw-away PostgreSQL, the server and the load are the tests' own helpers (tests.helpers).
sys.path[:0] = [str(REPO)]

from tests.helpers.mlflow_load import EPOCH_METRICS, check_store, log_runs
from tests.helpers.postgres import throwaway_postgres
from tests.helpers.servers import TrackingServer


def measure(store: str, uri: str, workers: int, runs: int, epochs: int) -> dict:
    """One load on one empty store: throughput, and what was lost."""
    import mlflow

    experiment_id = mlflow.MlflowClient(tracking_uri=uri).create_experiment("load")
    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool,
    ):
        barrier = manager.Barrier(workers)
        jobs = [pool.submit(log_runs, uri, experiment_id, runs, epochs, barrier) for _ in range(workers)]
        results = [job.result() for job in jobs]
    wall = max(r["seconds"] for r in results)  # they started together at the barrier
    points = sum(r["points"] for r in results)
    requests = points // len(EPOCH_METRICS) + 2 * workers * runs  # + create and end of each run
    errors = [e for r in results for e in r["errors"]]
    return {
        "store": store,
        "workers": workers,
        "runs_per_worker": runs,
        "epochs_per_run": epochs,
        "metric_points_sent": points,
        "wall_s": round(wall, 2),
        "metric_points_per_s": round(points / wall, 1),
        "requests_per_s": round(requests / wall, 1),
        "failed_runs": len(errors),
        **check_store(uri, experiment_id, epochs),
        "error_messages": sorted(set(errors))[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8, help="logging processes (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5, help="runs per process (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs per run (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="measurements of each store (default: %(default)s)"
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=4,
        help="the server's processes (default: MLflow's, %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    args = parser.parse_args()

    rows = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(REPO / "src")
    with tempfile.TemporaryDirectory() as folder, throwaway_postgres() as cluster:
        for repeat in range(args.repeats):
            # SQLite first, then the server: a fresh store of each kind per measurement.
            sqlite = f"sqlite:///{Path(folder) / f'mlflow-{repeat}.db'}"
            rows.append(measure("sqlite", sqlite, args.workers, args.runs, args.epochs))
            print(json.dumps(rows[-1]), flush=True)
            server = TrackingServer(
                cluster.url(f"mlflow{repeat}"),
                Path(folder) / f"artifacts-{repeat}",
                Path(folder) / "server.log",
                env,
                workers=args.server_workers,
            )
            server.start()
            try:
                rows.append(measure("server", server.url, args.workers, args.runs, args.epochs))
            finally:
                server.stop()
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        result = {
            "command": "python benchmarks/mlflow_server_load.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "mlflow": importlib.metadata.version("mlflow"),
            "server": f"lstm-ae tracking-server --workers {args.server_workers}, PostgreSQL on a Unix socket",
            "rows": rows,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
