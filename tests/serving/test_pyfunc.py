"""The MLflow model as `mlflow models serve` loads it: a restorer keeps the batch's size, the
autoencoder's size stays 32x32, with an error that says what to do; a refusal is an HTTP 400
whose message is the reason alone (tests/serving/test_served_errors.py posts to a real server)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from lstm_ae import tracking
from lstm_ae.serving.inference import ImageInputError
from lstm_ae.serving.pyfunc import ImageRequestError
from tests.helpers.tiny_models import save_fixed_size_model, save_restorer


def served(keras_file: Path, folder: Path) -> mlflow.pyfunc.PyFuncModel:
    tracking.save_reconstruction_model(keras_file, folder)
    return mlflow.pyfunc.load_model(str(folder))


def test_a_served_restorer_returns_a_batch_at_its_own_size(tmp_path: Path) -> None:
    model = served(save_restorer(tmp_path / "model.keras"), tmp_path / "served")
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    out = model.predict(images)
    assert out["reconstruction"].shape == (2, 48, 64, 3)
    np.testing.assert_array_equal(out["reconstruction"], images / np.float32(255.0))  # untrained: its input
    np.testing.assert_array_equal(out["mse"], [0.0, 0.0])


def test_the_served_autoencoder_still_takes_32x32_only(tmp_path: Path) -> None:
    model = served(save_fixed_size_model(tmp_path / "model.keras"), tmp_path / "served")
    assert model.predict(np.zeros((1, 32, 32, 3), np.uint8))["reconstruction"].shape == (1, 32, 32, 3)
    with pytest.raises(
        ImageInputError, match=r"the autoencoder's size, got \(1, 48, 64, 3\).*use a restorer"
    ):
        model.predict(np.zeros((1, 48, 64, 3), np.uint8))


def test_a_batch_over_the_limit_is_refused_from_its_shape_before_any_conversion(tmp_path: Path) -> None:
    class ShapeOnly:
        """A batch too large to allocate, of which only the shape may be read."""

        shape = (1, 4096, 4096, 3)

        def __array__(self, *args, **kwargs):
            raise AssertionError("converted before its size was checked")

    model = served(save_restorer(tmp_path / "model.keras"), tmp_path / "served")
    with pytest.raises(ImageRequestError, match=r"got 16,777,216 in shape \(1, 4096, 4096, 3\)") as raised:
        model.unwrap_python_model().predict(None, ShapeOnly())
    assert raised.value.get_http_status_code() == 400


def test_a_refusal_keeps_its_message_when_mlflow_rewrites_it() -> None:
    """MLflow's scoring server sets e.message = "Failed to predict data '<the array>'...Error: " + it."""
    error = ImageRequestError(reason := "expected images of shape (N, 32, 32, 3), got (0,)")
    error.message = f"Failed to predict data '{np.zeros((2, 2))}'. \nError: {error.message}"
    assert json.loads(error.serialize_as_json())["message"] == reason
    assert isinstance(error, ImageInputError) and str(error) == error.message
