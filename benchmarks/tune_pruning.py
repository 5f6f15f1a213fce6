"""Does pruning make a tuning study cheaper and still find its best trial? (docs/results.md: Tuning studies)

The same study with and without pruning: trial-epochs, wall time, best validation MSE, importances
(the Pruning table of docs/results.md, Tuning studies).

Run in the project root after `dvc repro preprocess` (the full data set), e.g.

    python benchmarks/tune_pruning.py --n-trials 20

Each study runs `lstm-ae tune` with the params.yaml search space (tune.train_images training
images, tune.max_epochs epochs per trial) into its own journal file under benchmarks/out/, so
the project's own study is untouched. It runs in a scratch folder under benchmarks/out/, so
the project's reports/tune is left alone too (benchmarks/scratch.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
from scratch import scratch_project


def run_study(pruner: str, n_trials: int, storage: Path, name: str) -> float:
    cwd, env = scratch_project(storage.parent / name)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_ae",
            "tune",
            "--study-name",
            name,
            "--pruner",
            pruner,
            "--n-trials",
            str(n_trials),
            "--storage",
            str(storage),
        ],
        check=True,
        cwd=cwd,
        env=env,
    )
    return time.perf_counter() - started


def describe(storage: Path, name: str, seconds: float, seed: int) -> dict:
    study = optuna.load_study(
        study_name=name,
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage))),
    )
    states = [t.state.name for t in study.trials]
    importances = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)
    )
    return {
        "study": name,
        "trials": len(states),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "trial_epochs": sum(len(t.intermediate_values) for t in study.trials),
        "wall_s": round(seconds, 1),
        "best_val_mse": study.best_value,
        "best_trial": study.best_trial.number,
        "best_params": study.best_params,
        "importances": {k: round(v, 3) for k, v in importances.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--pruners", nargs="+", default=["median", "none"])
    parser.add_argument("--seed", type=int, default=42, help="the params.yaml seed, for importances")
    args = parser.parse_args()
    out = Path("benchmarks/out")
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for pruner in args.pruners:
        name = f"bench-{pruner}-{stamp}"
        storage = out / f"{name}.log"
        rows.append(describe(storage, name, run_study(pruner, args.n_trials, storage, name), args.seed))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| pruner | trials (complete/pruned/failed) | trial-epochs | wall time | best val MSE |")
    print("|---|---|---|---|---|")
    for pruner, row in zip(args.pruners, rows):
        print(
            f"| {pruner} | {row['trials']} ({row['complete']}/{row['pruned']}/{row['failed']}) | "
            f"{row['trial_epochs']} | {row['wall_s'] / 60:.1f} min | {row['best_val_mse']:.5f} |"
        )
    (out / f"tune_pruning-{stamp}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
