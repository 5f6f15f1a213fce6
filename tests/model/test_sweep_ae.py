"""The sweep autoencoder: a code of exactly code_size floats, the only path from input to output;
PCA before training; the ablations; save and load."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from lstm_ae.baselines.pca import pca_reconstruct
from lstm_ae.config import SweepConfig
from lstm_ae.model.saved import load_model
from lstm_ae.model.sweep_ae import CodeSizeError, build_sweep_autoencoder, encoder, start_at_pca

TINY = SweepConfig(code_size=16, features=4, units=4, patch=2, linear_rate=0.03)


def images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` smooth random images in the row layout (n, 32, 96), values in [0, 1]."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 4, 4, 3), dtype=np.float32)
    return coarse.repeat(8, axis=1).repeat(8, axis=2).reshape(n, 32, 96)


def with_random_correction(model: keras.Model) -> keras.Model:
    """The correction starts at zero (the output is the linear image); give it weights, so the
    sweeps' part of the output shows."""
    layer = model.get_layer("decoder").get_layer("correction")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.random.default_rng(1).normal(0, 0.5, kernel.shape).astype("float32"), bias])
    return model


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_the_code_has_code_size_floats_and_the_output_the_input_shape(patch: int) -> None:
    model = build_sweep_autoencoder(TINY.model_copy(update={"patch": patch}))
    x = images(3)
    assert encoder(model).predict(x, verbose=0).shape == (3, 16)
    out = with_random_correction(model).predict(x, verbose=0)
    assert out.shape == (3, 32, 96) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("blocks", [1, 2])  # the default's one sweep block, the preset's two
def test_the_decoder_reads_the_code_and_nothing_else(blocks: int) -> None:
    """An input change that leaves the code as it is cannot change the output: add to an image a
    direction the encoder's kernel does not see (orthogonal to all its columns)."""
    model = with_random_correction(build_sweep_autoencoder(TINY.model_copy(update={"blocks": blocks})))
    x = images(2)
    kernel = keras.ops.convert_to_numpy(model.get_layer("code").kernel).astype(np.float64)
    direction = np.random.default_rng(2).normal(size=(2, 3072))
    q, _ = np.linalg.qr(kernel)  # an orthonormal basis of what the encoder sees
    unseen = direction - (direction @ q) @ q.T
    changed = (x.reshape(2, -1) + 0.05 * unseen / np.abs(unseen).max()).reshape(x.shape).astype(np.float32)
    assert np.abs(changed - x).max() > 0.01
    codes = encoder(model).predict(np.concatenate([x, changed]), verbose=0)
    np.testing.assert_allclose(codes[:2], codes[2:], atol=1e-5)
    before, after = model.predict(x, verbose=0), model.predict(changed, verbose=0)
    np.testing.assert_allclose(before, after, atol=1e-4)
    decoded = model.get_layer("decoder").predict(codes[:2], verbose=0)
    np.testing.assert_allclose(decoded, before, atol=1e-5)


def test_started_at_pca_it_reconstructs_like_pca() -> None:
    x = images(64)
    model = start_at_pca(build_sweep_autoencoder(TINY), x)
    expected = pca_reconstruct(x, x, 16).reshape(x.shape)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=2e-4)


def test_linear_rate_scales_the_steps_and_zero_freezes_pca() -> None:
    """One Adam step moves a ScaledDense weight by at most rate x the learning rate; at 0 the
    linear maps are frozen at PCA and only the sweeps train."""
    x = images(32)
    frozen = build_sweep_autoencoder(TINY.model_copy(update={"linear_rate": 0.0}))
    assert not frozen.get_layer("code").trainable_weights
    assert not frozen.get_layer("decoder").get_layer("linear_decoder").trainable_weights
    moved = {}
    for rate in (0.01, 0.1):
        model = with_random_correction(
            start_at_pca(build_sweep_autoencoder(TINY.model_copy(update={"linear_rate": rate})), x)
        )
        before = keras.ops.convert_to_numpy(model.get_layer("code").kernel) * rate
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        model.train_on_batch(x, x)
        moved[rate] = float(
            np.abs(keras.ops.convert_to_numpy(model.get_layer("code").kernel) * rate - before).max()
        )
    # Adam's first step is at most its rate per weight (less where a gradient is near its epsilon).
    assert 0 < moved[0.01] <= 1.1e-4 and moved[0.1] <= 1.1e-3 and moved[0.1] > 5 * moved[0.01]


@pytest.mark.parametrize(("sweeps", "reach"), [("both", "all"), ("rows", "row"), ("none", "block")])
def test_the_ablations_limit_what_a_block_sees(sweeps: str, reach: str) -> None:
    """Poke one block of the linear image (through the decoder's input) and see which blocks'
    corrections change: every block with row and column sweeps, its row with rows only, itself
    with per-block layers."""
    model = with_random_correction(build_sweep_autoencoder(TINY.model_copy(update={"sweeps": sweeps})))
    decoder = model.get_layer("decoder")
    probe = keras.Model(decoder.inputs, decoder.get_layer("correction").output)
    linear = decoder.get_layer("linear_decoder")
    linear.set_linear(np.eye(16, 3072, dtype=np.float32), np.full(3072, 0.5, dtype=np.float32))
    code = np.zeros((1, 16), dtype=np.float32)
    poked = code.copy()
    poked[0, 0] = 1.0  # pixel (0, 0), red: block (0, 0)
    changed = np.abs(probe.predict(poked, verbose=0) - probe.predict(code, verbose=0)).max(axis=-1)[0] > 1e-7
    expected = np.zeros((16, 16), dtype=bool)
    if reach == "all":
        expected[:] = True
    elif reach == "row":
        expected[0, :] = True
    else:
        expected[0, 0] = True
    np.testing.assert_array_equal(changed, expected)


def test_saved_and_loaded_it_gives_the_same_output(tmp_path: Path) -> None:
    model = with_random_correction(start_at_pca(build_sweep_autoencoder(TINY), images(64)))
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    x = images(2, seed=3)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(
        encoder(loaded).predict(x, verbose=0), encoder(model).predict(x, verbose=0), atol=1e-6
    )


def test_fewer_training_images_than_code_floats_is_refused_in_one_line() -> None:
    with pytest.raises(CodeSizeError, match=r"model.sweep.code_size is 16, .* there are 10; lower"):
        start_at_pca(build_sweep_autoencoder(TINY), images(10))
