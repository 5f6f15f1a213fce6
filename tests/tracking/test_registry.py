"""The registry: the champion alias moves only to a better test MSE.

On a throwaway SQLite store in tmp_path (tests/tracking/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from lstm_ae.tracking import registry, store


def logged_run(keras_file: Path) -> str:
    """A finished run holding a logged reconstruction model."""
    with mlflow.start_run() as run:
        registry.log_reconstruction_model(keras_file)
    return run.info.run_id


@pytest.mark.slow
def test_champion_moves_only_to_a_better_test_mse(tmp_path: Path) -> None:
    import keras

    store.use_project_store()
    keras_file = tmp_path / "tiny.keras"
    keras.Sequential([keras.Input((32, 96)), keras.layers.Dense(96, activation="sigmoid")]).save(keras_file)
    client = mlflow.MlflowClient()

    def champion() -> tuple[str, str]:
        version = client.get_model_version_by_alias(registry.REGISTERED_MODEL, registry.CHAMPION)
        return str(version.version), version.tags["test_mse"]

    first, worse, better = (logged_run(keras_file) for _ in range(3))
    assert registry.register_model(first, 0.010) == ("1", True)
    assert registry.register_model(worse, 0.020) == ("2", False)
    assert champion() == ("1", "0.01")
    assert registry.register_model(better, 0.005) == ("3", True)
    assert champion() == ("3", "0.005")
    assert registry.register_model(better, 0.005) == ("3", True)  # evaluated again: no new version
    assert len(client.search_model_versions(f"name = '{registry.REGISTERED_MODEL}'")) == 3

    served = mlflow.pyfunc.load_model(f"models:/{registry.REGISTERED_MODEL}@{registry.CHAMPION}")
    out = served.predict(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert out["reconstruction"].shape == (2, 32, 32, 3) and out["mse"].shape == (2,)
