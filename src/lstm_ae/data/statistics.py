"""Summary numbers of an image set (brightness, channel correlation), computed in chunks to bound memory."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# 1024 CIFAR images are 3M values: 24 MB as float64, so 50,000 images never need a full float copy.
CHUNK_IMAGES = 1024


def unit_chunks(images: np.ndarray, chunk_size: int = CHUNK_IMAGES) -> Iterator[np.ndarray]:
    """Yield consecutive slices of ``images`` as float32 in [0, 1]; uint8 input is scaled by 1/255."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        scale = np.float32(1.0 / 255.0)
    elif np.issubdtype(images.dtype, np.floating):
        scale = None
    else:
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    for start in range(0, len(images), chunk_size):
        chunk = images[start : start + chunk_size].astype(np.float32, copy=False)
        yield chunk * scale if scale is not None else chunk


def _check_rgb(images: np.ndarray) -> None:
    """Both statistics read the last axis as R, G, B."""
    if np.ndim(images) < 2 or np.shape(images)[-1] != 3:
        raise ValueError(f"expected images with 3 channels last (..., 3), got shape {np.shape(images)}")
    if len(images) == 0:
        raise ValueError("expected at least one image, got an empty batch")


def brightness_stats(images: np.ndarray) -> dict[str, float]:
    """Mean and (population) variance of every pixel value of every channel, on the [0, 1] scale."""
    _check_rgb(images)
    count, total, total_sq = 0, 0.0, 0.0
    for chunk in unit_chunks(images):
        count += chunk.size
        total += float(np.sum(chunk, dtype=np.float64))
        total_sq += float(np.sum(np.square(chunk, dtype=np.float64)))
    mean = total / count
    # Values lie in [0, 1], so the sum-of-squares form loses nothing noticeable in float64.
    return {"brightness_mean": mean, "brightness_var": max(total_sq / count - mean * mean, 0.0)}


def channel_corr(images: np.ndarray) -> np.ndarray:
    """3x3 Pearson correlation between the R, G and B values of the same pixels.

    A channel with zero variance has no defined correlation; its row and column are NaN.
    """
    _check_rgb(images)
    count, sums, cross = 0, np.zeros(3), np.zeros((3, 3))
    for chunk in unit_chunks(images):
        pixels = chunk.reshape(-1, 3).astype(np.float64)
        count += len(pixels)
        sums += pixels.sum(axis=0)
        cross += pixels.T @ pixels
    mean = sums / count
    cov = cross / count - np.outer(mean, mean)
    # Rounding leaves a constant channel with a variance of ~1e-17 rather than 0; treat it as constant.
    var = np.diag(cov)
    std = np.where(var > 1e-12, np.sqrt(np.clip(var, 0.0, None)), np.nan)
    return np.clip(cov / np.outer(std, std), -1.0, 1.0)
