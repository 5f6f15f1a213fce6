"""Images in any accepted form -> [0, 1] floats; reconstructions and per-image error."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_ae.serving.inference import ImageInputError, reconstruct, to_unit_images


class Halve:
    """A stand-in model: output = input / 2, so the error is known exactly."""

    def predict(self, x: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
        assert x.shape[1:] == (32, 96) and x.dtype == np.float32
        return x / 2


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.int32])
def test_integer_pixels_are_0_to_255(dtype: type) -> None:
    images = np.full((2, 32, 32, 3), 255, dtype=dtype)
    unit = to_unit_images(images)
    assert unit.dtype == np.float32 and unit.shape == (2, 32, 32, 3) and np.all(unit == 1.0)


def test_float_pixels_are_kept_and_one_image_becomes_a_batch() -> None:
    image = np.full((32, 32, 3), 0.25, dtype=np.float64)
    unit = to_unit_images(image)
    assert unit.shape == (1, 32, 32, 3) and unit.dtype == np.float32 and np.all(unit == 0.25)


def test_nested_lists_as_json_delivers_them() -> None:
    images = np.zeros((1, 32, 32, 3), dtype=np.uint8).tolist()
    assert to_unit_images(images).shape == (1, 32, 32, 3)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 32, 32)), r"shape \(N, 32, 32, 3\)"),
        (np.zeros((2, 28, 28, 3)), r"got \(2, 28, 28, 3\)"),
        (np.zeros((0, 32, 32, 3)), r"got \(0, 32, 32, 3\)"),
        (np.full((1, 32, 32, 3), 300), "integer pixels must be 0-255"),
        (np.full((1, 32, 32, 3), -1), "integer pixels must be 0-255"),
        (
            np.full((1, 32, 32, 3), 2.0),
            r"float pixels must be finite and in \[0, 1\].*divide 0-255 values by 255",
        ),
        (np.full((1, 32, 32, 3), np.nan), "float pixels must be finite"),
        (np.full((1, 32, 32, 3), "a"), "dtype <U1"),
    ],
)
def test_bad_images_say_what_is_expected(images: np.ndarray, message: str) -> None:
    with pytest.raises(ImageInputError, match=message):
        to_unit_images(images)


def test_reconstruct_returns_images_and_per_image_mse() -> None:
    images = np.stack([np.full((32, 32, 3), 0.5), np.full((32, 32, 3), 1.0)]).astype(np.float32)
    recon, mse = reconstruct(Halve(), images)
    assert recon.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(recon[0], 0.25)
    np.testing.assert_allclose(mse, [0.0625, 0.25])
