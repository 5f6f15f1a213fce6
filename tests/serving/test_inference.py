"""Images in any accepted form -> [0, 1] floats; reconstructions and per-image error."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_ae.serving.inference import (
    MAX_BATCH_PIXELS,
    ImageInputError,
    check_batch_pixels,
    claimed_shape,
    figure_scale,
    input_size,
    reconstruct,
    to_uint8,
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
        (np.full((1, 32, 32, 3), np.nan), r"float pixels must be finite and in \[0, 1\], got 3,072 NaN"),
        (np.where(np.arange(3072).reshape(1, 32, 32, 3) == 5, np.inf, 0.5), r"got 1 NaN or infinite value"),
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


@pytest.mark.parametrize(("height", "width", "scale"), [(32, 32, 4), (48, 64, 2), (600, 800, 1), (1, 1, 128)])
def test_figures_enlarge_small_images_to_about_128_pixels(height: int, width: int, scale: int) -> None:
    assert figure_scale(height, width) == scale


def test_the_shape_of_nested_lists_is_read_without_converting_them() -> None:
    assert claimed_shape(np.zeros((2, 5, 4, 3))) == (2, 5, 4, 3)
    assert claimed_shape([[[[0, 0, 0]] * 4] * 5] * 2) == (2, 5, 4, 3)
    assert claimed_shape([]) == (0,)
    assert claimed_shape("abc") == ()


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((MAX_BATCH_PIXELS // 1024, 32, 32, 3), np.uint8),  # the limit itself
        [[[[0, 0, 0]] * 32] * 32],
        "not an image",  # refused later, for its shape
    ],
)
def test_batches_up_to_the_limit_pass(images: object) -> None:
    check_batch_pixels(images)


def test_a_batch_over_the_limit_is_refused_from_its_shape_alone() -> None:
    class ShapeOnly:
        """Claims a shape too large to allocate: only the shape may be read."""

        shape = (1, 100_000, 100_000, 3)

    message = (
        "a request may hold at most 1,048,576 pixels (e.g. one 1024x1024 image or 1,024 of 32x32), "
        "got 10,000,000,000 in shape (1, 100000, 100000, 3); send fewer or smaller images per request"
    )
    with pytest.raises(ImageInputError) as raised:
        check_batch_pixels(ShapeOnly())
    assert str(raised.value) == message
    with pytest.raises(ImageInputError, match=r"got 1,049,600 in shape \(1025, 32, 32, 3\)"):
        check_batch_pixels([[[[0, 0, 0]] * 32] * 32] * 1025)


def test_a_restorer_sees_a_large_image_in_tiles_of_bounded_size() -> None:
    class Record(HalveAnySize):
        def predict(self, x: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
            self.calls = [*getattr(self, "calls", []), x.shape]
            return x / 2

    model = Record()
    recon, mse = reconstruct(model, np.full((1, 600, 500, 3), 0.5, np.float32))
    assert recon.shape == (1, 600, 500, 3) and np.all(recon == 0.25)
    np.testing.assert_allclose(mse, [0.0625])
    assert len(model.calls) > 1 and all(h <= 384 and w <= 384 * 3 for _, h, w in model.calls)


def test_pixels_become_png_integers_rounded_and_clipped() -> None:
    image = np.array([[[-0.5, 0.0, 0.5 / 255], [0.502, 1.0, 7.0]]], np.float32)
    np.testing.assert_array_equal(to_uint8(image), [[[0, 0, 0], [128, 255, 255]]])
