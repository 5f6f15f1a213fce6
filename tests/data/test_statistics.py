"""EDA numbers against plain numpy, across dtypes and chunk boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_ae.data import statistics
from lstm_ae.data.statistics import brightness_stats, channel_corr, unit_chunks


def _uint8_images(n: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)


def test_brightness_stats_match_numpy() -> None:
    images = np.random.default_rng(0).uniform(size=(40, 8, 8, 3)).astype(np.float32)
    stats = brightness_stats(images)
    assert stats["brightness_mean"] == pytest.approx(images.astype(np.float64).mean(), rel=1e-9)
    assert stats["brightness_var"] == pytest.approx(images.astype(np.float64).var(), rel=1e-6)


def test_uint8_and_float_inputs_agree() -> None:
    images = _uint8_images()
    as_float = images.astype(np.float64) / 255
    from_uint8, from_float = brightness_stats(images), brightness_stats(as_float)
    assert from_uint8["brightness_mean"] == pytest.approx(from_float["brightness_mean"], rel=1e-6)
    assert from_uint8["brightness_var"] == pytest.approx(from_float["brightness_var"], rel=1e-5)
    np.testing.assert_allclose(channel_corr(images), channel_corr(as_float), atol=1e-6)


def test_chunking_does_not_change_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    images = _uint8_images(37)
    whole_stats, whole_corr = brightness_stats(images), channel_corr(images)
    monkeypatch.setattr(statistics, "CHUNK_IMAGES", 5)
    assert len(list(unit_chunks(images, 5))) == 8
    assert brightness_stats(images) == pytest.approx(whole_stats, rel=1e-9)
    np.testing.assert_allclose(channel_corr(images), whole_corr, atol=1e-12)


def test_unit_chunks_scale_and_reject_other_dtypes() -> None:
    chunk = next(unit_chunks(np.array([[[0, 255, 51]]], dtype=np.uint8)))
    assert chunk.dtype == np.float32
    np.testing.assert_allclose(chunk, [[[0.0, 1.0, 0.2]]], rtol=1e-6)
    with pytest.raises(ValueError, match="uint8 or float"):
        next(unit_chunks(np.zeros((1, 2, 2, 3), dtype=np.int64)))


def test_perfectly_correlated_channels_give_ones() -> None:
    gray = np.random.default_rng(1).uniform(size=(20, 8, 8, 1))
    np.testing.assert_allclose(channel_corr(np.repeat(gray, 3, axis=-1)), np.ones((3, 3)), atol=1e-9)


def test_channel_corr_matches_numpy_and_sees_anticorrelation() -> None:
    rng = np.random.default_rng(2)
    red = rng.uniform(size=(30, 8, 8))
    images = np.stack([red, 1 - red, rng.uniform(size=red.shape)], axis=-1)
    corr = channel_corr(images)
    # unit_chunks works in float32, so agreement is to float32 precision.
    np.testing.assert_allclose(corr, np.corrcoef(images.reshape(-1, 3), rowvar=False), atol=1e-6)
    assert corr[0, 1] == pytest.approx(-1.0)
    assert abs(corr[0, 2]) < 0.05


def test_constant_channel_gives_nan_correlation() -> None:
    images = np.random.default_rng(3).uniform(size=(10, 4, 4, 3))
    images[..., 2] = 0.5
    corr = channel_corr(images)
    assert np.isnan(corr[2]).all() and np.isnan(corr[:, 2]).all()
    assert corr[0, 0] == pytest.approx(1.0)


def test_non_rgb_input_raises() -> None:
    with pytest.raises(ValueError, match="3 channels"):
        brightness_stats(np.zeros((2, 32, 96)))
    with pytest.raises(ValueError, match="empty"):
        channel_corr(np.zeros((0, 4, 4, 3)))
