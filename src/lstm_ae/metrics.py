"""Reconstruction quality metrics (MSE, PSNR, SSIM, per-class MSE) on batches of HWC images in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.metrics import structural_similarity

# PSNR of two identical images is infinite; flooring the MSE keeps the mean PSNR (and metrics.json)
# finite. With data_range 1 the floor caps PSNR at 100 dB, far above any real reconstruction.
MSE_FLOOR = 1e-10


def _check_pair(clean: np.ndarray, recon: np.ndarray, min_ndim: int = 2) -> None:
    """Fail early, with both shapes in the message, rather than letting numpy broadcast silently."""
    if clean.shape != recon.shape:
        raise ValueError(f"clean and recon must have the same shape, got {clean.shape} and {recon.shape}")
    if clean.ndim < min_ndim:
        raise ValueError(f"expected a batch of images with at least {min_ndim} dims, got shape {clean.shape}")


def mse_per_image(clean: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Mean squared error of each image over all its pixels and channels, shape (N,)."""
    clean, recon = np.asarray(clean), np.asarray(recon)
    _check_pair(clean, recon)
    # Subtract in (at least) float32 so integer inputs cannot wrap around; accumulate in float64.
    dtype = np.result_type(clean.dtype, recon.dtype, np.float32)
    diff = clean.reshape(len(clean), -1).astype(dtype, copy=False) - recon.reshape(len(recon), -1)
    return np.mean(np.square(diff), axis=1, dtype=np.float64)


def psnr_from_mse(mse: np.ndarray, data_range: float) -> np.ndarray:
    """PSNR in dB from per-image MSE, with the MSE floored so identical images stay finite."""
    return 10.0 * np.log10(data_range**2 / np.maximum(mse, MSE_FLOOR))


def psnr_per_image(clean: np.ndarray, recon: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio of each image in dB, shape (N,); finite even for identical images."""
    return psnr_from_mse(mse_per_image(clean, recon), data_range)


def ssim_per_image(clean: np.ndarray, recon: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Structural similarity of each HWC image, shape (N,), with Wang et al.'s Gaussian-window settings.

    The settings (11x11 Gaussian window, sigma 1.5, population covariance) match the original paper
    so the numbers are comparable with published ones. A plain loop is used: about 8 s for 10,000
    32x32x3 images on two cores, which an evaluation stage can afford.
    """
    clean, recon = np.asarray(clean), np.asarray(recon)
    _check_pair(clean, recon, min_ndim=4)
    if clean.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W, C), got {clean.shape}")
    return np.array(
        [
            structural_similarity(
                c,
                r,
                data_range=data_range,
                channel_axis=-1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for c, r in zip(clean, recon, strict=True)
        ],
        dtype=np.float64,
    )


def per_class_mse(mse: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Mean of the per-image MSE over the images of each class, keyed by class name.

    Classes with no images are left out rather than reported as NaN, which JSON cannot hold.
    """
    mse, labels = np.asarray(mse), np.asarray(labels).reshape(-1)
    if mse.shape != labels.shape:
        raise ValueError(f"mse and labels must have the same length, got {mse.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"labels must lie in [0, {len(class_names)}), got {labels.min()}..{labels.max()}")
    return {
        name: float(mse[labels == index].mean())
        for index, name in enumerate(class_names)
        if np.any(labels == index)
    }


# The names of every score evaluate writes (reports/metrics.json) and logs: ``{prefix}_{stat}`` and,
# per class, ``{prefix}_mse_{class}``. The prefix says whose output was scored.
HEADLINE = ("mse", "psnr", "ssim")
MODEL = "test"  # the trained model's output
PCA = "pca_test"  # PCA at the model's code size
INPUT = "input_test"  # the corrupted input itself (deblur, denoise)


def classical_prefix(method: str) -> str:
    """The prefix of a classical restoration's scores, e.g. ``wiener_test``."""
    return f"{method}_test"


def key(prefix: str, stat: str, class_name: str | None = None) -> str:
    """One score's name: ``key(PCA, "mse")`` is ``pca_test_mse``; with a class, that class's MSE."""
    return f"{prefix}_{stat}" if class_name is None else f"{prefix}_{stat}_{class_name}"


def headline(summary: dict[str, float], prefix: str) -> dict[str, float]:
    """MSE, PSNR and SSIM of one summary; its per-class numbers go to their own file and plot."""
    return {key(prefix, stat): summary[key(prefix, stat)] for stat in HEADLINE}


def summarize(
    clean: np.ndarray,
    recon: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    prefix: str = "test",
) -> dict[str, float]:
    """All headline metrics of one split as a flat dict whose keys carry the split, e.g. ``test_psnr``."""
    mse = mse_per_image(clean, recon)
    # Every image has the same number of pixels, so the mean of per-image MSEs is the pixel-wise mean.
    summary = {
        key(prefix, "mse"): float(mse.mean()),
        key(prefix, "psnr"): float(psnr_from_mse(mse, 1.0).mean()),
        key(prefix, "ssim"): float(ssim_per_image(clean, recon).mean()),
    }
    for name, value in per_class_mse(mse, labels, class_names).items():
        summary[key(prefix, "mse", name)] = value
    return summary
