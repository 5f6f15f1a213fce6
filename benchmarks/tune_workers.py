"""Does a study run by several workers lose or repeat trials? (docs/reliability.md: Under load)

Several workers, or several trials per process, on one study under load: trial count, failures,
duplicates, wall time, memory. Behind the workers and storages table of docs/reliability.md (Under
load) and the trials-per-process figures of docs/results.md (Tuning studies).

Run in the project root after `dvc repro preprocess` (the full data set), e.g.

    python benchmarks/tune_workers.py --workers 4 --n-trials 12
    python benchmarks/tune_workers.py --workers 1 --trials-per-process 1 6 --n-trials 6
    python benchmarks/tune_workers.py --workers 4 --n-trials 12 --storage postgresql+psycopg2://user@/optuna?host=/run/pg

Each study runs `lstm-ae tune` with a copy of params.yaml whose trials are short (tune.max_epochs
and tune.train_images below), into a fresh study (its own journal file under benchmarks/out/
unless --storage is given) and the project's MLflow store. It runs in a scratch folder under
benchmarks/out/, so the project's reports/tune is left alone (benchmarks/scratch.py). Afterwards
it checks both stores: trials by state, trial numbers that repeat, trials without exactly one
MLflow child run, and "database is locked" in the command's output, and each trial's resident
memory at its end (in trial order: with several trials per process it shows what a process keeps
from trial to trial).
Prints one JSON line per study.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import mlflow
import optuna
import yaml
from scratch import scratch_project

from lstm_ae.tracking import store
from lstm_ae.tuning import search


def run_study(
    params: Path, name: str, storage: str, workers: int, per_process: int, n_trials: int
) -> tuple[float, str]:
    cwd, env = scratch_project(params.parent / name, params)
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_ae",
            "tune",
            "--study-name",
            name,
            "--storage",
            storage,
            "--workers",
            str(workers),
            "--trials-per-process",
            str(per_process),
            "--n-trials",
            str(n_trials),
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"study {name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, result.stderr


def check(name: str, storage: str, seconds: float, log: str, workers: int, per_process: int) -> dict:
    study = optuna.load_study(study_name=name, storage=search.open_storage(storage, Path.cwd()))
    states = Counter(t.state.name for t in study.trials)
    numbers = Counter(t.number for t in study.trials)
    client = mlflow.MlflowClient(tracking_uri=store.tracking_uri())
    experiment = client.get_experiment_by_name(store.EXPERIMENT)
    children = client.search_runs(
        [experiment.experiment_id],
        f"tags.`optuna.study_name` = '{name}' and tags.`optuna.trial_number` != ''",
        max_results=10_000,
    )
    runs_per_trial = Counter(int(r.data.tags["optuna.trial_number"]) for r in children)
    by_trial = sorted(children, key=lambda r: int(r.data.tags["optuna.trial_number"]))
    return {
        "study": name,
        "storage": search.redact(storage),
        "workers": workers,
        "trials_per_process": per_process,
        "processes": len({t.user_attrs.get("worker") for t in study.trials}),
        "trials": len(study.trials),
        "states": dict(states),
        "repeated_trial_numbers": [n for n, c in numbers.items() if c > 1],
        "trials_without_one_mlflow_run": [t.number for t in study.trials if runs_per_trial[t.number] != 1],
        "mlflow_runs_still_running": sum(r.info.status == "RUNNING" for r in children),
        "database_is_locked_lines": log.count("database is locked"),
        "wall_s": round(seconds, 1),
        "trial_seconds_sum": round(sum(t.duration.total_seconds() for t in study.trials if t.duration), 1),
        "rss_mib_by_trial": [round(r.data.metrics.get("rss_mib", float("nan"))) for r in by_trial],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[4])
    parser.add_argument("--trials-per-process", type=int, nargs="+", default=[1])
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--storage", help="an Optuna storage URL (default: a new journal file per study)")
    parser.add_argument("--max-epochs", type=int, default=1)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--val-images", type=int, default=500)
    args = parser.parse_args()
    out = Path("benchmarks/out")
    out.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    raw["tune"].update(max_epochs=args.max_epochs, train_images=args.train_images, val_images=args.val_images)
    params = out / "tune_workers.params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for workers in args.workers:
        for per_process in args.trials_per_process:
            name = f"bench-workers{workers}-per-process{per_process}-{stamp}"
            storage = args.storage or str(out / f"{name}.log")
            seconds, log = run_study(params, name, storage, workers, per_process, args.n_trials)
            rows.append(check(name, storage, seconds, log, workers, per_process))
            print(json.dumps(rows[-1]), flush=True)
    (out / f"tune_workers-{stamp}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
