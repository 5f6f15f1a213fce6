"""Classical baselines: each restores better than its input, tuning picks the best validation score,
Wiener's mirror padding inverts the task's blur, Richardson-Lucy is skimage's update, bad input fails."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from scipy.ndimage import convolve, gaussian_filter
from skimage.restoration import richardson_lucy

from lstm_ae.baselines import classical
from lstm_ae.baselines.classical import CLASSICAL, gaussian_psf, methods, restore, tune_strength
from lstm_ae.data.corruption import Corruption
from lstm_ae.data.sequences import to_images, to_sequences
from lstm_ae.metrics import psnr_per_image

SIGMA = {"denoise": 0.1, "deblur": 1.0}
ALL_METHODS = [(task, method) for task in CLASSICAL for method in CLASSICAL[task]]


@pytest.fixture(autouse=True)
def _pywavelets(request: pytest.FixtureRequest) -> None:
    """denoise_wavelet needs PyWavelets, an optional scikit-image dependency: required under CI."""
    if "wavelet" in request.node.name and importlib.util.find_spec("pywt") is None:
        if os.environ.get("CI"):
            pytest.fail("PyWavelets is not installed; the wavelet baseline needs it in requirements.lock")
        pytest.skip("PyWavelets is not installed (pip install PyWavelets)")


def _scenes(n: int, seed: int, shape: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Piecewise-smooth RGB images in [0.1, 0.9]: a colour gradient with a few flat rectangles.

    Natural images are mostly like this, and it gives blur edges to lose and noise flat areas to hide in.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    images = np.empty((n, h, w, 3), dtype=np.float32)
    for i in range(n):
        slope = rng.uniform(-0.3, 0.3, size=(2, 3))
        image = 0.5 + yy[..., None] * slope[0] + xx[..., None] * slope[1]
        for _ in range(3):
            top, left = rng.integers(0, h - 6), rng.integers(0, w - 6)
            image[top : top + rng.integers(4, h - top), left : left + rng.integers(4, w - left)] = (
                rng.uniform(0.1, 0.9, size=3)
            )
        images[i] = np.clip(image, 0.1, 0.9)
    return images


def _corrupt(task: str, clean: np.ndarray, split: str = "test") -> np.ndarray:
    """The project's own corruption at the default strengths, seeded as the evaluate stage does."""
    corruption = Corruption.for_task(task, blur_sigma=SIGMA["deblur"], noise_sigma=SIGMA["denoise"])
    return to_images(corruption.fixed(to_sequences(clean), seed=42, split=split))


@pytest.mark.parametrize(("task", "method"), ALL_METHODS)
def test_tuned_method_beats_its_corrupted_input(task: str, method: str) -> None:
    clean_val, clean_test = _scenes(6, seed=1), _scenes(6, seed=2)
    strength, _ = tune_strength(method, _corrupt(task, clean_val, "val"), clean_val, SIGMA[task])
    corrupted = _corrupt(task, clean_test)
    restored = restore(method, corrupted, strength, SIGMA[task])
    gain = psnr_per_image(clean_test, restored).mean() - psnr_per_image(clean_test, corrupted).mean()
    assert gain > 4.0, f"{method} gained only {gain:.2f} dB"


@pytest.mark.parametrize(("task", "method"), ALL_METHODS)
def test_output_keeps_shape_and_is_float32_in_unit_range(task: str, method: str) -> None:
    # Not square, float64 in: the padding and crop must keep the geometry, the output is float32.
    clean = _scenes(3, seed=3, shape=(24, 40)).astype(np.float64)
    corrupted = np.clip(clean + np.random.default_rng(0).normal(0, 0.2, clean.shape), 0, 1)
    restored = restore(method, corrupted, CLASSICAL[task][method][0], SIGMA[task])
    assert restored.shape == clean.shape
    assert restored.dtype == np.float32
    assert restored.min() >= 0.0 and restored.max() <= 1.0


@pytest.mark.parametrize("method", ["nl_means", "richardson_lucy"])
def test_tune_strength_returns_the_grid_point_with_the_best_validation_psnr(method: str) -> None:
    task = "denoise" if method == "nl_means" else "deblur"
    clean = _scenes(4, seed=4)
    corrupted = _corrupt(task, clean, "val")
    grid = CLASSICAL[task][method][:4]
    best, scores = tune_strength(method, corrupted, clean, SIGMA[task], grid=grid)
    assert list(scores) == list(grid)
    assert scores[best] == max(scores.values())
    for strength, score in scores.items():
        restored = restore(method, corrupted, strength, SIGMA[task])
        assert score == pytest.approx(psnr_per_image(clean, restored).mean(), abs=1e-9)


def test_tune_strength_defaults_to_the_method_grid_and_its_choice_depends_on_the_data() -> None:
    clean = _scenes(4, seed=5)
    noisy = _corrupt("denoise", clean, "val")
    _, scores = tune_strength("tv", noisy, clean, SIGMA["denoise"])
    assert tuple(scores) == CLASSICAL["denoise"]["tv"]
    # Told the noise is 4x weaker than it is, TV needs a 4x larger multiple of that sigma.
    weak, _ = tune_strength("tv", noisy, clean, SIGMA["denoise"] / 4, grid=(0.6, 2.4))
    strong, _ = tune_strength("tv", noisy, clean, SIGMA["denoise"], grid=(0.6, 2.4))
    assert (weak, strong) == (2.4, 0.6)


def test_gaussian_psf_is_the_kernel_of_the_task_blur() -> None:
    psf = gaussian_psf(1.0)
    assert psf.shape == (9, 9)
    assert psf.sum() == pytest.approx(1.0)
    image = _scenes(1, seed=6)[0, ..., 0].astype(np.float64)
    np.testing.assert_allclose(
        convolve(image, psf, mode="reflect"),
        gaussian_filter(image, 1.0, mode="reflect", truncate=4.0),
        atol=1e-12,
    )


def test_mirror_padded_wiener_inverts_the_noiseless_task_blur() -> None:
    clean = _scenes(4, seed=7)
    blurred = classical._blur(clean, SIGMA["deblur"])  # the task's blur before its 8-bit rounding
    padded = psnr_per_image(clean, restore("wiener", blurred, 1e-10, 1.0)).mean()
    # The filter alone, on the images without padding: the circular blur it assumes is wrong at the borders.
    unpadded = np.clip(classical._wiener(blurred, 1.0, 1e-10, mirror_pad=False), 0, 1)
    assert padded > 60.0
    assert padded - psnr_per_image(clean, unpadded).mean() > 30.0


def test_richardson_lucy_is_skimages_update_with_mirrored_borders() -> None:
    blurred = _corrupt("deblur", _scenes(2, seed=8))
    ours = restore("richardson_lucy", blurred, 3, 1.0)
    # skimage's zero borders reach 2 x 4 px further in per iteration; 32 mirrored px keep 3 of them out.
    for n in range(len(blurred)):
        for c in range(3):
            padded = np.pad(blurred[n, ..., c].astype(np.float64), 32, mode="symmetric")
            reference = richardson_lucy(padded, gaussian_psf(1.0), num_iter=3, clip=False)[32:64, 32:64]
            np.testing.assert_allclose(ours[n, ..., c], np.clip(reference, 0, 1), atol=1e-5)


def test_richardson_lucy_sharpens_with_every_grid_step_on_noiseless_blur() -> None:
    clean = _scenes(3, seed=9)
    _, scores = tune_strength("richardson_lucy", _corrupt("deblur", clean), clean, 1.0)
    values = list(scores.values())
    assert values == sorted(values)


def test_parallel_workers_give_the_same_images() -> None:
    noisy = _corrupt("denoise", _scenes(5, seed=10))
    np.testing.assert_array_equal(
        restore("nl_means", noisy, 0.7, 0.1, n_jobs=2), restore("nl_means", noisy, 0.7, 0.1, n_jobs=1)
    )


def test_methods_lists_each_task() -> None:
    assert methods("denoise") == ("tv", "wavelet", "nl_means")
    assert methods("deblur") == ("wiener", "richardson_lucy")


def test_unknown_task_lists_the_tasks() -> None:
    with pytest.raises(ValueError, match=r"^unknown task 'inpaint'; choose one of: denoise, deblur$"):
        methods("inpaint")


@pytest.mark.parametrize("call", [restore, tune_strength])
def test_unknown_method_lists_every_method(call: object) -> None:
    images = _scenes(1, seed=11)
    expected = r"^unknown method 'median'; choose one of: tv, wavelet, nl_means, wiener, richardson_lucy$"
    with pytest.raises(ValueError, match=expected):
        if call is restore:
            restore("median", images, 1.0, 0.1)
        else:
            tune_strength("median", images, images, 0.1)


@pytest.mark.parametrize(
    ("method", "images", "strength", "sigma", "message"),
    [
        ("tv", np.zeros((2, 32, 96)), 0.5, 0.1, r"RGB images \(N, H, W, 3\), got shape \(2, 32, 96\)"),
        ("tv", np.zeros((0, 32, 32, 3)), 0.5, 0.1, "non-empty"),
        ("tv", np.zeros((1, 32, 32, 3)), 0.5, 0.0, "sigma .* must be > 0, got 0.0"),
        ("wiener", np.zeros((1, 32, 32, 3)), -1e-3, 1.0, "wiener strength must be > 0, got -0.001"),
        ("richardson_lucy", np.zeros((1, 32, 32, 3)), 2.5, 1.0, "whole number of iterations, got 2.5"),
        (
            "wiener",
            np.zeros((1, 8, 8, 3)),
            1e-3,
            3.0,
            "blur sigma 3.0 needs a 25 px kernel, too large for 8x8",
        ),
    ],
)
def test_bad_arguments_fail_with_one_line(
    method: str, images: np.ndarray, strength: float, sigma: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        restore(method, images, strength, sigma)
    assert "\n" not in str(caught.value)


def test_tune_strength_refuses_mismatched_or_empty_inputs() -> None:
    images = _scenes(2, seed=12)
    with pytest.raises(ValueError, match="same shape, got"):
        tune_strength("tv", images, images[:1], 0.1)
    with pytest.raises(ValueError, match="at least one strength"):
        tune_strength("tv", images, images, 0.1, grid=())
