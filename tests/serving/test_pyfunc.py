"""The MLflow model as `mlflow models serve` loads it: a restorer keeps the batch's size, the
autoencoder's size stays 32x32, with an error that says what to do; a refusal is an HTTP 400
whose message is the reason alone (tests/serving/test_served_errors.py posts to a real server)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from lstm_ae.model.saved import load_model
from lstm_ae.model.sweep_ae import encoder
from lstm_ae.serving.inference import ImageInputError, encode, reconstruct
from lstm_ae.serving.pyfunc import ImageRequestError
from lstm_ae.tracking import registry
from tests.helpers.tiny_models import save_fixed_size_model, save_restorer, save_sweep_autoencoder


def served(keras_file: Path, folder: Path) -> mlflow.pyfunc.PyFuncModel:
    registry.save_reconstruction_model(keras_file, folder)
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


def test_a_served_sweep_autoencoder_gives_each_images_code_beside_its_reconstruction(tmp_path: Path) -> None:
    """The code is what the decoder rebuilt the image from: the same floats as a Python call
    (inference.encode) and as the model's own encoder; models without a code answer without one."""
    keras_file = save_sweep_autoencoder(tmp_path / "model.keras", code_size=8)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = served(keras_file, tmp_path / "served").predict(images)
    assert out["reconstruction"].shape == (3, 32, 32, 3) and out["code"].shape == (3, 8)
    keras_model = load_model(keras_file)
    np.testing.assert_allclose(out["code"], encode(keras_model, images), atol=1e-6)
    recon, mse = reconstruct(keras_model, images)  # one pass gives what two separate calls give
    np.testing.assert_allclose(out["reconstruction"], recon, atol=1e-6)
    np.testing.assert_allclose(out["mse"], mse, rtol=1e-5)
    rows = (images / np.float32(255.0)).reshape(3, 32, 96)
    np.testing.assert_allclose(out["code"], encoder(keras_model).predict(rows, verbose=0), atol=1e-5)
    restorer = served(save_restorer(tmp_path / "restorer.keras"), tmp_path / "served-restorer")
    assert "code" not in restorer.predict(images)
    with pytest.raises(ImageInputError, match="has no code"):
        encode(load_model(tmp_path / "restorer.keras"), images)


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
