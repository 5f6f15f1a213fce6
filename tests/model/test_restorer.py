"""The restorer: any image size, its input unchanged until trained, and sweeps that carry
information across the image (the ablation without them keeps each pixel to itself)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from lstm_ae.config import RestorerConfig, load_config
from lstm_ae.model.build import build_model
from lstm_ae.model.restorer import Sweep, build_restorer

PARAMS = Path(__file__).parents[2] / "params.yaml"
TINY = RestorerConfig(features=4, units=4, blocks=1)


def rows(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``n`` random images in the row layout, (n, height, width * 3), values in [0, 1]."""
    return np.random.default_rng(seed).random((n, height, width * 3), dtype=np.float32)


def with_random_correction(model: keras.Model) -> keras.Model:
    """The correction layer starts at zero (the model returns its input); give it weights, so
    that what reaches each output pixel shows."""
    layer = model.get_layer("correction")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.random.default_rng(1).normal(0, 0.5, kernel.shape).astype("float32"), bias])
    return model


@pytest.mark.parametrize(("height", "width"), [(32, 32), (48, 64), (5, 7)])
def test_it_takes_any_size_and_returns_the_same_size(height: int, width: int) -> None:
    model = with_random_correction(build_restorer(TINY))
    out = model.predict(rows(2, height, width), verbose=0)
    assert out.shape == (2, height, width * 3) and out.min() >= 0 and out.max() <= 1


def test_untrained_it_returns_its_input_exactly() -> None:
    x = rows(3, 32, 32)
    np.testing.assert_array_equal(build_restorer(TINY).predict(x, verbose=0), x)


def test_predictions_are_clipped_but_training_sees_the_unclipped_sum() -> None:
    model = build_restorer(TINY)
    layer = model.get_layer("correction")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.full_like(bias, 0.5)])  # adds 0.5 everywhere
    x = np.full((1, 4, 12), 0.8, dtype=np.float32)
    np.testing.assert_allclose(model(x, training=False), 1.0)
    np.testing.assert_allclose(model(x, training=True), 1.3, rtol=1e-6)


@pytest.mark.parametrize("sweeps", [True, False], ids=["sweeps", "pointwise"])
def test_only_the_sweeps_let_a_pixel_change_the_others(sweeps: bool) -> None:
    model = with_random_correction(build_restorer(TINY.model_copy(update={"sweeps": sweeps})))
    x = np.full((1, 8, 8 * 3), 0.5, dtype=np.float32)
    poked = x.copy()
    poked[0, 0, :3] = 1.0  # the top-left pixel
    moved = np.abs(model(poked, training=True) - model(x, training=True)).reshape(8, 8, 3).max(axis=-1)
    if sweeps:  # one row-then-column pair reaches the far corner
        assert (moved > 0).all()
    else:
        assert moved[0, 0] > 1e-4 and (np.delete(moved.reshape(-1), 0) == 0).all()


def test_the_ablation_has_the_same_depth_and_no_sweep() -> None:
    full, pointwise = build_restorer(TINY), build_restorer(TINY.model_copy(update={"sweeps": False}))
    assert sum(isinstance(layer, Sweep) for layer in full.layers) == 2 * TINY.blocks
    assert not any(isinstance(layer, Sweep) for layer in pointwise.layers)
    assert len(full.layers) == len(pointwise.layers)
    assert pointwise.count_params() < full.count_params()


def test_each_block_adds_a_row_and_a_column_sweep() -> None:
    model = build_restorer(TINY.model_copy(update={"blocks": 2}))
    assert [layer.axis for layer in model.layers if isinstance(layer, Sweep)] == ["rows", "columns"] * 2


def test_build_model_follows_the_family() -> None:
    model = load_config(PARAMS).model.model_copy(update={"restorer": TINY})
    assert build_model(model.model_copy(update={"family": "autoencoder"})).name == "lstm_autoencoder"
    assert build_model(model).name == "sweep_autoencoder"  # the default family
    assert build_model(model.model_copy(update={"family": "restorer"})).name == "lstm_restorer"


def test_sweep_refuses_an_unknown_axis() -> None:
    with pytest.raises(ValueError, match="axis must be 'rows' or 'columns'"):
        Sweep(4, "diagonal")
