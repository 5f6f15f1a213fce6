"""The restoration tasks' corruptions: what each one does to an image, and that they are seeded."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_ae.data.corruption import Corruption, gaussian_blur, gaussian_noise, to_8_bits
from lstm_ae.data.sequences import to_images, to_sequences

DEBLUR, DENOISE, IDENTITY = Corruption("deblur", 1.0), Corruption("denoise", 0.1), Corruption("reconstruct")


def random_rows(n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 32, 96)).astype(np.float32)


def test_for_task_takes_only_the_sigma_of_its_task() -> None:
    assert Corruption.for_task("deblur", 1.5, 0.2) == Corruption("deblur", 1.5)
    assert Corruption.for_task("denoise", 1.5, 0.2) == Corruption("denoise", 0.2)
    assert Corruption.for_task("reconstruct", 1.5, 0.2) == Corruption("reconstruct", 0.0)
    assert (
        DEBLUR.describe() == "Gaussian blur, sigma 1 px" and DENOISE.describe() == "Gaussian noise, sigma 0.1"
    )


def test_reconstruct_leaves_the_input_alone() -> None:
    rows = random_rows()
    assert IDENTITY.apply(rows) is rows and IDENTITY.fixed(rows, 42, "test") is rows


def test_blur_keeps_a_flat_image_and_smooths_a_noisy_one() -> None:
    flat = np.full((2, 32, 96), 0.3, np.float32)
    np.testing.assert_allclose(gaussian_blur(flat, 1.0), flat, atol=1e-6)
    rows = random_rows()
    blurred = gaussian_blur(rows, 1.0)
    assert blurred.shape == rows.shape and blurred.dtype == np.float32
    assert blurred.std() < rows.std() / 2  # white noise loses most of its variance
    np.testing.assert_allclose(blurred.mean(), rows.mean(), atol=0.01)  # a blur moves no light
    assert gaussian_blur(rows, 2.0).std() < blurred.std()


def test_blur_works_in_the_image_plane_and_never_mixes_colours() -> None:
    """One red dot: the blur spreads it over neighbouring pixels, symmetrically, and only in red."""
    images = np.zeros((1, 32, 32, 3), np.float32)
    images[0, 16, 16, 0] = 1.0
    blurred = to_images(gaussian_blur(to_sequences(images), 1.0))
    assert np.all(blurred[..., 1:] == 0)
    red = blurred[0, :, :, 0]
    assert red[16, 16] == red.max() < 1
    neighbours = [red[15, 16], red[17, 16], red[16, 15], red[16, 17]]
    assert neighbours == pytest.approx([neighbours[0]] * 4) and neighbours[0] > 0
    assert red.sum() == pytest.approx(1.0, abs=1e-5)


def test_noise_has_the_asked_sigma_and_is_clipped_to_the_pixel_range() -> None:
    grey = np.full((64, 32, 96), 0.5, np.float32)
    noisy = gaussian_noise(grey, 0.1, np.random.default_rng(0))
    assert noisy.dtype == np.float32
    assert (noisy - grey).std() == pytest.approx(0.1, rel=0.02)
    extreme = gaussian_noise(np.zeros((4, 32, 96), np.float32), 0.5, np.random.default_rng(0))
    assert (
        extreme.min() == 0.0 and extreme.max() <= 1.0 and (extreme > 0).mean() == pytest.approx(0.5, abs=0.05)
    )


def test_validation_and_test_inputs_are_the_same_on_every_run_and_differ_from_each_other() -> None:
    rows = random_rows()
    val, again = DENOISE.fixed(rows, 42, "val"), DENOISE.fixed(rows, 42, "val")
    np.testing.assert_array_equal(val, again)
    assert not np.array_equal(val, DENOISE.fixed(rows, 42, "test"))
    assert not np.array_equal(val, DENOISE.fixed(rows, 43, "val"))  # the seed in params.yaml decides
    np.testing.assert_array_equal(
        DEBLUR.fixed(rows, 42, "val"), DEBLUR.fixed(rows, 7, "test")
    )  # blur has no noise


def test_corrupted_inputs_are_8_bit_images_and_clean_ones_are_left_alone() -> None:
    rows = random_rows()
    for corrupted in (DEBLUR.apply(rows), DENOISE.fixed(rows, 42, "val")):
        levels = corrupted * 255
        np.testing.assert_allclose(levels, np.rint(levels), atol=1e-4)
        assert corrupted.dtype == np.float32
    assert Corruption("reconstruct").apply(rows) is rows
    assert to_8_bits(np.array([0.0, 0.6 / 255, 0.302, 1.0])).tolist() == pytest.approx(
        [0, 1 / 255, 77 / 255, 1]
    )


def test_noise_without_a_generator_is_refused() -> None:
    with pytest.raises(ValueError, match="pass a numpy Generator"):
        DENOISE.apply(random_rows())
