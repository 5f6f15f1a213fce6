"""Images <-> row sequences, pixel scaling and the seeded train/validation split."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lstm_ae.data.sequences import FEATURES, ROWS, scale, split_train_val, to_images, to_sequences


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_round_trip_is_exact_and_keeps_dtype(dtype: type) -> None:
    images = random_images(5).astype(dtype)
    sequences = to_sequences(images)
    assert sequences.shape == (5, ROWS, FEATURES) and sequences.dtype == dtype
    back = to_images(sequences)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, images)


def test_a_row_is_the_image_row_with_rgb_interleaved() -> None:
    images = random_images(3)
    sequences = to_sequences(images)
    for i, row in [(0, 0), (1, 17), (2, 31)]:
        np.testing.assert_array_equal(sequences[i, row], images[i, row].reshape(-1))
    # Pixel (row 5, column 7), blue channel, is feature 3 * 7 + 2 of timestep 5 and nowhere else.
    one = np.zeros((2, 32, 32, 3), np.uint8)
    one[1, 5, 7, 2] = 200
    sequences = to_sequences(one)
    assert sequences[1, 5, 3 * 7 + 2] == 200
    assert int(sequences.sum()) == 200


@pytest.mark.parametrize("shape", [(32, 32, 3), (2, 32, 32), (2, 3, 32, 32), (2, 32, 32, 4), (2, 32, 96)])
def test_to_sequences_refuses_other_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        to_sequences(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("shape", [(32, 96), (2, 96, 32), (2, 32, 32, 3), (2, 32, 95)])
def test_to_images_refuses_other_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, 32, 96\)"):
        to_images(np.zeros(shape, np.uint8))


def test_scale_maps_uint8_to_unit_float32() -> None:
    pixels = np.array([0, 1, 128, 254, 255], np.uint8)
    scaled = scale(pixels)
    assert scaled.dtype == np.float32
    assert scaled[0] == 0.0 and scaled[-1] == 1.0
    assert np.all((scaled >= 0) & (scaled <= 1)) and np.all(np.diff(scaled) > 0)
    np.testing.assert_allclose(scaled[2], 128 / 255, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint16])
def test_scale_refuses_other_dtypes(dtype: type) -> None:
    with pytest.raises(ValueError, match="uint8"):
        scale(np.zeros(4, dtype))


def split(seed: int, val_fraction: float = 0.2) -> tuple[np.ndarray, ...]:
    y = np.arange(50)
    x = np.repeat(y, 96).reshape(50, 1, 96)  # every feature of sample i holds i
    return split_train_val(x, y, val_fraction, seed)


def test_split_sizes_and_alignment() -> None:
    x_train, x_val, y_train, y_val = split(seed=42)
    assert (len(x_train), len(x_val), len(y_train), len(y_val)) == (40, 10, 40, 10)
    np.testing.assert_array_equal(x_train[:, 0, 0], y_train)
    np.testing.assert_array_equal(x_val[:, 0, 5], y_val)
    assert sorted(np.concatenate([y_train, y_val]).tolist()) == list(range(50))


def test_split_is_seeded() -> None:
    same = [part.tolist() for part in split(seed=7)]
    assert same == [part.tolist() for part in split(seed=7)]
    assert split(seed=7)[3].tolist() != split(seed=8)[3].tolist()
    assert split(seed=7)[3].tolist() != list(range(40, 50))  # shuffled, not the tail


@pytest.mark.parametrize("val_fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_split_refuses_fractions_outside_0_1(val_fraction: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        split(seed=0, val_fraction=val_fraction)


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(0, 6), st.just(32), st.just(32), st.just(3))))
def test_round_trip_property(images: np.ndarray) -> None:
    np.testing.assert_array_equal(to_images(to_sequences(images)), images)


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(0, 4), st.just(32), st.just(96))))
def test_scale_property_order_kept_range_unit_and_exact_inverse(pixels: np.ndarray) -> None:
    scaled = scale(pixels)
    assert scaled.dtype == np.float32 and scaled.shape == pixels.shape
    assert ((scaled >= 0) & (scaled <= 1)).all()
    np.testing.assert_array_equal(np.rint(scaled * 255).astype(np.uint8), pixels)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(2, 300), val_fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_split_property_partitions_the_samples(n: int, val_fraction: float, seed: int) -> None:
    """Every sample lands in exactly one split, with its label, whatever the size and fraction."""
    y = np.arange(n)
    x = np.repeat(y, 96).reshape(n, 1, 96)
    try:
        x_train, x_val, y_train, y_val = split_train_val(x, y, val_fraction, seed)
    except ValueError as exc:  # a split that would leave one side empty is refused, not made
        assert "val_fraction" in str(exc) or "sample" in str(exc)
        return
    assert len(x_val) >= 1 and len(x_train) >= 1
    assert sorted(np.concatenate([y_train, y_val]).tolist()) == list(range(n))
    np.testing.assert_array_equal(x_train[:, 0, 0], y_train)
    np.testing.assert_array_equal(x_val[:, 0, 0], y_val)
