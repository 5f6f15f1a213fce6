"""The model as MLflow logs, saves and serves it, and the registry entry that crowns the best."""

from __future__ import annotations

import importlib.metadata
import math
from pathlib import Path
from typing import Any

import mlflow

from lstm_ae import hardware
from lstm_ae.atomic import atomic_dir
from lstm_ae.data.corruption import Corruption

PACKAGE = Path(__file__).parents[1]  # lstm_ae, which travels with a logged model as its code


# Imports a served model needs besides the package itself (which travels as code) and TensorFlow,
# which is pinned as the build installed here (hardware.tensorflow_requirement).
SERVING_REQUIREMENTS = ("keras", "mlflow", "numpy", "scikit-learn", "scikit-image")
REGISTERED_MODEL = "cifar10-lstm-autoencoder"
REGISTERED_RESTORER = "cifar10-lstm-restorer"  # model.family restorer
REGISTERED_SWEEP = "cifar10-lstm-sweep-autoencoder"  # model.family sweep_ae
CHAMPION = "champion"


def log_reconstruction_model(keras_file: Path) -> None:
    """Log the saved Keras file as a pyfunc (``serving.ReconstructionModel``) named "model".

    The lstm_ae package travels with it (code_paths) and the requirements are pinned to what is
    installed here, so ``mlflow models serve`` works outside this checkout too; listing them
    also spares MLflow's slow requirement inference (it would load TensorFlow in a subprocess).
    """
    mlflow.pyfunc.log_model(name="model", **_reconstruction_model(keras_file))


def save_reconstruction_model(keras_file: Path, folder: Path) -> None:
    """The same model as an MLflow model folder in the project (models/served, a DVC output), so a
    clone that pulls it from the team's DVC remote serves it (`mlflow models serve -m models/served`)
    without the MLflow store it was trained in. Written whole or not at all."""
    with atomic_dir(folder) as tmp:
        mlflow.pyfunc.save_model(tmp, **_reconstruction_model(keras_file))


def serving_requirements() -> list[str]:
    """The served model's pip requirements: the versions installed here, TensorFlow's build included."""
    pinned = [f"{name}=={importlib.metadata.version(name)}" for name in SERVING_REQUIREMENTS]
    return [hardware.tensorflow_requirement(), *pinned]


def _reconstruction_model(keras_file: Path) -> dict[str, Any]:
    """What the logged and the saved model are made of; models from code, so no pickle."""
    return {
        "python_model": str(PACKAGE / "serving" / "model_code.py"),
        "artifacts": {"keras_model": str(keras_file)},
        "code_paths": [str(PACKAGE)],
        "pip_requirements": serving_requirements(),
    }


def registered_name(corruption: Corruption, family: str = "autoencoder") -> str:
    """One registry entry per model family, task and strength, so `champion` only compares like
    with like: a denoiser's test MSE says nothing about a plain autoencoder's, nor a restorer's
    about a bottlenecked model's. The autoencoder keeps the names it had before the restorer."""
    name = {"restorer": REGISTERED_RESTORER, "sweep_ae": REGISTERED_SWEEP}.get(family, REGISTERED_MODEL)
    if corruption.is_identity:
        return name
    return f"{name}-{corruption.task}-sigma{corruption.strength:g}"


def register_model(run_id: str, test_mse: float, name: str = REGISTERED_MODEL) -> tuple[str, bool]:
    """Register the run's model (once per run) as ``name`` with its test MSE as a version tag, and
    move the `champion` alias to it only if it beats the current champion's test MSE.

    Returns (version, whether it is now the champion).
    """
    client = mlflow.MlflowClient()
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = existing[0]
        client.set_model_version_tag(name, version.version, "test_mse", repr(test_mse))
    else:
        logged = mlflow.search_logged_models(
            filter_string=f"source_run_id = '{run_id}' AND name = 'model'",
            max_results=1,
            output_format="list",
        )
        if not logged:
            raise mlflow.exceptions.MlflowException(f"run {run_id} has no logged model named 'model'")
        version = mlflow.register_model(logged[0].model_uri, name, tags={"test_mse": repr(test_mse)})
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
        best = float(champion.tags.get("test_mse", "inf"))
        is_same = str(champion.version) == str(version.version)
    except mlflow.exceptions.MlflowException:  # no champion yet
        best, is_same = math.inf, False
    crowned = is_same or test_mse < best
    if crowned and not is_same:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    return str(version.version), crowned
