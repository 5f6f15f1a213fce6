"""Metrics on hand-made images whose MSE, PSNR, SSIM and per-class means are known."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from lstm_ae.metrics import mse_per_image, per_class_mse, psnr_per_image, ssim_per_image, summarize

CLASSES = ("cat", "dog", "ship")


def _images(n: int = 4, seed: int = 0) -> np.ndarray:
    """Random images kept inside [0.1, 0.9] so a 0.1 offset stays within [0, 1]."""
    return np.random.default_rng(seed).uniform(0.1, 0.9, size=(n, 32, 32, 3)).astype(np.float32)


def test_constant_offset_gives_known_mse_and_psnr() -> None:
    clean = _images()
    recon = clean + np.float32(0.1)
    np.testing.assert_allclose(mse_per_image(clean, recon), 0.01, rtol=1e-5)
    np.testing.assert_allclose(psnr_per_image(clean, recon), 20.0, atol=1e-3)


def test_mse_differs_per_image() -> None:
    clean = np.zeros((3, 32, 32, 3), np.float32)
    recon = clean + np.array([0.0, 0.2, 0.5], np.float32)[:, None, None, None]
    np.testing.assert_allclose(mse_per_image(clean, recon), [0.0, 0.04, 0.25], rtol=1e-6)


def test_psnr_scales_with_data_range() -> None:
    clean = _images() * 255
    recon = clean + 25.5
    np.testing.assert_allclose(psnr_per_image(clean, recon, data_range=255.0), 20.0, atol=1e-3)


def test_identical_images_give_ssim_one_and_finite_psnr() -> None:
    clean = _images()
    psnr = psnr_per_image(clean, clean.copy())
    assert np.all(np.isfinite(psnr))
    np.testing.assert_allclose(psnr, 100.0)  # the 1e-10 MSE floor
    np.testing.assert_allclose(ssim_per_image(clean, clean.copy()), 1.0, atol=1e-6)


def test_ssim_matches_skimage_per_image_and_drops_with_noise() -> None:
    clean = _images(3)
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    got = ssim_per_image(clean, noisy)
    expected = [
        structural_similarity(
            c,
            r,
            data_range=1.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for c, r in zip(clean, noisy, strict=True)
    ]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected)
    assert np.all(got < 0.95)


@pytest.mark.parametrize("fn", [mse_per_image, psnr_per_image, ssim_per_image])
def test_shape_mismatch_raises(fn) -> None:
    with pytest.raises(ValueError, match="same shape"):
        fn(_images(2), _images(3))


def test_ssim_needs_hwc_batches() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        ssim_per_image(np.zeros((2, 32, 96, 1, 1)), np.zeros((2, 32, 96, 1, 1)))


def test_per_class_mse_is_mean_per_class_and_skips_empty_classes() -> None:
    mse = np.array([1.0, 2.0, 3.0, 10.0])
    labels = np.array([0, 0, 2, 2])
    assert per_class_mse(mse, labels, CLASSES) == {"cat": 1.5, "ship": 6.5}


def test_per_class_mse_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="same length"):
        per_class_mse(np.ones(3), np.zeros(2, int), CLASSES)
    with pytest.raises(ValueError, match="labels must lie"):
        per_class_mse(np.ones(2), np.array([0, 3]), CLASSES)


def test_summarize_keys_and_values() -> None:
    clean = _images(4)
    offsets = np.array([0.1, 0.1, 0.0, 0.0], np.float32)[:, None, None, None]
    recon = clean + offsets
    summary = summarize(clean, recon, np.array([0, 0, 1, 1]), CLASSES, prefix="val")
    assert set(summary) == {"val_mse", "val_psnr", "val_ssim", "val_mse_cat", "val_mse_dog"}
    assert summary["val_mse"] == pytest.approx(0.005, rel=1e-5)
    assert summary["val_psnr"] == pytest.approx((20.0 + 20.0 + 100.0 + 100.0) / 4, abs=1e-3)
    assert summary["val_mse_cat"] == pytest.approx(0.01, rel=1e-5)
    assert summary["val_mse_dog"] == 0.0
    assert 0.0 < summary["val_ssim"] <= 1.0
    assert all(isinstance(v, float) for v in summary.values())
