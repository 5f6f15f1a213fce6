"""benchmarks/hoisted_lstm.py times the report's model, so it must be the report's model: same
parameters, same outputs and same training step as Keras' LSTMs from the same weights."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

from lstm_ae.config import REPORT_MODEL
from lstm_ae.model import build_autoencoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from hoisted_lstm import hoisted_copy  # noqa: E402


def _pair() -> tuple[keras.Model, keras.Model]:
    keras.utils.set_random_seed(0)
    reference = build_autoencoder(REPORT_MODEL)
    return reference, hoisted_copy(reference)


def test_the_hoisted_model_computes_the_reports_function() -> None:
    reference, hoisted = _pair()
    assert hoisted.count_params() == reference.count_params() == 2_695_552
    images = np.random.default_rng(1).random((8, 32, 96), dtype=np.float32)
    np.testing.assert_allclose(hoisted.predict(images, verbose=0), reference.predict(images, verbose=0), atol=1e-5)


def test_one_training_step_moves_both_models_to_the_same_weights() -> None:
    reference, hoisted = _pair()
    images = np.random.default_rng(2).random((8, 32, 96), dtype=np.float32)
    for model in (reference, hoisted):
        # Plain SGD: the weights after one step differ by exactly the learning rate times the gradient.
        model.compile(optimizer=keras.optimizers.SGD(10.0), loss="mse")
        model.train_on_batch(images, images)
    stepped = hoisted_copy(reference)
    for expected, actual in zip(stepped.get_weights(), hoisted.get_weights()):
        np.testing.assert_allclose(actual, expected, atol=1e-5)
