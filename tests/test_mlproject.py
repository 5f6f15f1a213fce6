"""MLproject: `mlflow run -e STAGE -P key=value` sets any settings key, the run records it, and a
study run through `mlflow run` stays with the project's runs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from tests.helpers.projects import REPO, cli_env
from tests.helpers.studies import make_project, mlflow_runs, split_runs

pytestmark = pytest.mark.slow

EXPERIMENT = "cifar10-lstm-autoencoder"


def mlflow_run(project: Path, entry_point: str, *args: str) -> subprocess.CompletedProcess:
    """`mlflow run` of the project folder with this environment's Python, logging to its own store."""
    for name in ("MLproject", "python_env.yaml"):
        shutil.copy(REPO / name, project / name)
    if not (project / "conf").exists():
        shutil.copytree(REPO / "conf", project / "conf")
    env = cli_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` is this one
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(project),
        "-e",
        entry_point,
        "--env-manager",
        "local",
    ]
    result = subprocess.run(
        [*command, *args], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_mlflow_run_of_the_train_entry_point_takes_a_preset_and_any_key(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    mlflow_run(
        project,
        "train",
        *("--experiment-name", EXPERIMENT),
        *("-P", "preset=smoke", "-P", "train.max_epochs=1", "-P", "model.decoder_widths=[4]"),
    )
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
    params = run.data.params
    # The -P values win over the preset; what they do not name is the preset's (smoke: batch 64).
    assert (params["preset"], params["train.max_epochs"], params["train.batch_size"]) == ("smoke", "1", "64")
    # `mlflow run` logs each -P value itself, as it passed it to the shell (a list in quotes).
    assert shlex.split(params["model.decoder_widths"]) == ["[4]"]
    assert run.info.status == "FINISHED" and "val_loss" in run.data.metrics


def test_a_study_run_by_mlflow_run_stays_in_the_project_experiment_and_resumes_its_run(
    tmp_path: Path,
) -> None:
    # No --experiment-name: `mlflow run` puts its own run in MLflow's Default experiment.
    project = make_project(tmp_path, n_trials=1, max_epochs=1)
    mlflow_run(project, "tune", "-P", "n_trials=1")
    mlflow_run(project, "tune", "-P", "n_trials=2")  # continues the study: one more trial

    parents, children = split_runs(mlflow_runs(project))
    assert len(parents) == 1 and len(children) == 2  # one parent run across both commands
    (parent,) = parents
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parent.info.run_id}
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    launched = client.search_runs(["0"])  # the runs `mlflow run` made, each pointing to the study
    assert len(launched) == 2
    for run in launched:
        assert parent.info.run_id in run.data.tags["mlflow.note.content"]
