"""Images in any accepted form -> [0, 1] floats; reconstructions and per-image error."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_ae.serving.inference import (
    ImageInputError,
    figure_scale,
    input_size,
    reconstruct,
    reconstruct_by_size,
    to_unit_images,
)


class Halve:
    """A stand-in autoencoder: 32x32 images as (32, 96) rows, output = input / 2, so the error is
    known exactly."""

    input_shape = (None, 32, 96)

    def predict(self, x: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
        assert x.shape[1:] == (32, 96) and x.dtype == np.float32
        return x / 2


class HalveAnySize(Halve):
    """A stand-in restorer: any size, as (height, width * 3) rows."""

    input_shape = (None, None, None)

    def predict(self, x: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
        self.seen = x.shape
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
        (np.zeros((2, 28, 28, 3)), r"got \(2, 28, 28, 3\); resize them to 32x32, or use a restorer"),
        (np.zeros((48, 64, 3)), r"the autoencoder's size, got \(48, 64, 3\)"),
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


def test_input_size_is_read_from_the_models_rows() -> None:
    assert input_size(Halve()) == (32, 32)
    assert input_size(HalveAnySize()) is None


def test_any_size_takes_a_batch_or_one_image_of_its_own_size() -> None:
    assert to_unit_images(np.zeros((2, 48, 64, 3), np.uint8), size=None).shape == (2, 48, 64, 3)
    assert to_unit_images(np.ones((1, 1, 3), np.float32), size=None).shape == (1, 1, 1, 3)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 48, 64)), r"shape \(N, H, W, 3\) .*got \(2, 48, 64\)"),
        (np.zeros((1, 48, 64, 4)), r"got \(1, 48, 64, 4\)"),
        (np.zeros((1, 0, 64, 3)), r"H and W at least 1\), got \(1, 0, 64, 3\)"),
        ([np.zeros((4, 4, 3)).tolist(), np.zeros((5, 4, 3)).tolist()], "must share one size"),
        (np.full((1, 48, 64, 3), 1.5), r"float pixels must be finite and in \[0, 1\]"),
    ],
)
def test_any_size_still_needs_rgb_images_of_one_size(images: object, message: str) -> None:
    with pytest.raises(ImageInputError, match=message):
        to_unit_images(images, size=None)


def test_a_model_of_any_size_reconstructs_at_the_images_size() -> None:
    model = HalveAnySize()
    recon, mse = reconstruct(model, np.full((2, 48, 64, 3), 0.5, np.float32))
    assert model.seen == (2, 48, 64 * 3) and recon.shape == (2, 48, 64, 3)
    np.testing.assert_allclose(recon, 0.25)
    np.testing.assert_allclose(mse, [0.0625, 0.0625])


def test_reconstruct_by_size_calls_once_per_size_and_keeps_the_order() -> None:
    calls = []

    def double_clipped(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(batch.shape)
        return np.minimum(batch * 2, 1.0), batch.reshape(len(batch), -1).mean(axis=1)

    images = [np.full((h, w, 3), i / 10) for i, (h, w) in enumerate([(4, 6), (2, 2), (4, 6), (1, 1)])]
    recon, mse = reconstruct_by_size(double_clipped, images)
    assert calls == [(2, 4, 6, 3), (1, 2, 2, 3), (1, 1, 1, 3)]
    assert [r.shape for r in recon] == [(4, 6, 3), (2, 2, 3), (4, 6, 3), (1, 1, 3)]
    np.testing.assert_allclose([r[0, 0, 0] for r in recon], [0.0, 0.2, 0.4, 0.6])
    np.testing.assert_allclose(mse, [0.0, 0.1, 0.2, 0.3])


@pytest.mark.parametrize(("height", "width", "scale"), [(32, 32, 4), (48, 64, 2), (600, 800, 1), (1, 1, 128)])
def test_figures_enlarge_small_images_to_about_128_pixels(height: int, width: int, scale: int) -> None:
    assert figure_scale(height, width) == scale
