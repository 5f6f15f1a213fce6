"""MLproject: `mlflow run -e STAGE -P key=value` sets any settings key, and the run records it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from projects import REPO, cli_env, make_tiny_project

pytestmark = pytest.mark.slow

EXPERIMENT = "cifar10-lstm-autoencoder"


def test_mlflow_run_of_the_train_entry_point_takes_a_preset_and_any_key(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path, model={"encoder_widths": [8], "decoder_widths": [8]})
    for name in ("MLproject", "python_env.yaml"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "conf", project / "conf")
    env = cli_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` is this one
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    command = [
        *(sys.executable, "-m", "mlflow", "run", str(project), "-e", "train", "--env-manager", "local"),
        *("--experiment-name", EXPERIMENT),
        *("-P", "preset=smoke", "-P", "train.max_epochs=1", "-P", "model.decoder_widths=[4]"),
    ]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (run,) = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
    params = run.data.params
    # The -P values win over the preset; what they do not name is the preset's (smoke: encoder [64]).
    assert (params["preset"], params["train.max_epochs"], params["model.decoder_widths"]) == (
        "smoke",
        "1",
        "[4]",
    )
    assert params["model.encoder_widths"] == "[64]"
    assert run.info.status == "FINISHED" and "val_loss" in run.data.metrics
