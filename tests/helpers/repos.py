"""A copy of this repository as its own git project, and the commands a user runs in it.

The end-to-end tests (pipeline, presets, queue, remote, tracking server) each work in such a copy,
so `dvc repro` and `dvc exp run` run exactly as in a user's clone, never in this checkout."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import yaml
from dvc.utils.hydra import compose_and_dump

from tests.helpers.archives import make_archive, official_contents

REPO = Path(__file__).resolve().parents[2]
# The default family (the sweep autoencoder) with an 8-float code, and a small LSTM autoencoder for
# the presets that choose it.
TINY_MODEL = {
    "model.sweep.code_size": 8,
    "model.sweep.features": 4,
    "model.sweep.units": 4,
    "model.sweep.patch": 4,
    "model.encoder_widths": [16, 8],
    "model.decoder_widths": [8],
    "train.max_epochs": 2,
}


def tool_env() -> dict[str, str]:
    """This interpreter's bin folder first, so `python` and `dvc` are the ones under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def sh(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in ``project`` as a user would; a failure shows its output in the assertion."""
    result = subprocess.run(args, cwd=project, env=tool_env(), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def copy_project(dest: Path) -> Path:
    """A fresh git repository holding the tracked and untracked-but-not-ignored files of this one."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "config", "user.email", "test@lstm-ae")
    sh(dest, "git", "config", "user.name", "lstm-ae tests")
    commit(dest, "copy of the project under test")
    return dest


def commit(project: Path, message: str) -> None:
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", message, "--allow-empty")


def set_keys(path: Path, values: dict[str, object]) -> None:
    """Set dotted keys in a YAML settings file, as a user editing it would."""
    settings = yaml.safe_load(path.read_text())
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        section = settings
        for key in parents:
            section = section[key]
        section[leaf] = value
    path.write_text(yaml.safe_dump(settings, sort_keys=False))


def set_params(project: Path, values: dict[str, object]) -> None:
    """Edit conf/config.yaml as a user changes a setting for good, and compose params.yaml from it as
    `dvc exp run` does, so both plain `dvc repro` and later experiments use the values."""
    set_keys(project / "conf" / "config.yaml", values)
    compose_and_dump(project / "params.yaml", str(project / "conf"), None, "config", str(project), [])


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def tiny_project(root: Path, archive_folder: Path) -> Path:
    """A committed project copy set to a tiny archive (40 images a batch) and a tiny model; no
    stage has run yet."""
    project = copy_project(root)
    archive = make_archive(archive_folder / "tiny.tar.gz", official_contents(per_batch=40))
    set_params(
        project,
        {"fetch.url": str(archive), "fetch.md5": md5(archive), "eda.scatter_samples": 500, **TINY_MODEL},
    )
    commit(project, "tiny settings")
    return project


def project_runs(project: Path) -> list[mlflow.entities.Run]:
    """The runs in the project's own MLflow store (mlflow.db)."""
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["cifar10-lstm-autoencoder"], output_format="list")
