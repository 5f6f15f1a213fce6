"""Reconstruct a batch of images and score each one: what the served model, the reconstruct
command and evaluation share. Pure: arrays in, arrays out.

Pixel scale is decided by dtype, which survives JSON (integers vs decimals): integer pixels
are 0-255 values, floating-point pixels are already in [0, 1].
"""

from __future__ import annotations

import numpy as np

from lstm_ae.data.sequences import to_images, to_sequences
from lstm_ae.errors import UserError
from lstm_ae.metrics import mse_per_image

IMAGE_SHAPE = (32, 32, 3)


class ImageInputError(UserError, ValueError):
    """Images of the wrong shape or range; the message says what is expected."""


def to_unit_images(images: object) -> np.ndarray:
    """A batch (N, 32, 32, 3), or one image (32, 32, 3), as float32 in [0, 1]."""
    array = np.asarray(images)
    if array.shape == IMAGE_SHAPE:
        array = array[np.newaxis]
    if array.ndim != 4 or array.shape[1:] != IMAGE_SHAPE or len(array) == 0:
        raise ImageInputError(f"expected images of shape (N, 32, 32, 3) (RGB, 32x32), got {array.shape}")
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        if array.min() < 0 or array.max() > 255:
            raise ImageInputError(f"integer pixels must be 0-255, got {array.min()}..{array.max()}")
        return array.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise ImageInputError(f"pixels must be integers 0-255 or floats in [0, 1], got dtype {array.dtype}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ImageInputError(
            f"float pixels must be finite and in [0, 1], got {np.nanmin(array):.4g}..{np.nanmax(array):.4g}; "
            "divide 0-255 values by 255 or send them as integers"
        )
    return array.astype(np.float32, copy=False)


def reconstruct(model, images: object, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(reconstructions (N, 32, 32, 3) float32 in [0, 1], per-image MSE (N,)) for any Keras-like
    model that maps (N, 32, 96) row sequences to the same shape."""
    unit = to_unit_images(images)
    recon = np.asarray(model.predict(to_sequences(unit), batch_size=batch_size, verbose=0), dtype=np.float32)
    recon = np.clip(to_images(recon), 0.0, 1.0)
    return recon, mse_per_image(unit, recon)


def side_by_side(original: np.ndarray, recon: np.ndarray, scale: int = 4, gap: int = 2) -> np.ndarray:
    """One uint8 picture: the original left, the reconstruction right, each enlarged ``scale``
    times without smoothing (32x32 is too small to judge at its own size)."""
    halves = [
        np.rint(np.clip(np.asarray(x, dtype=np.float32), 0, 1) * 255).astype(np.uint8)
        for x in (original, recon)
    ]
    halves = [half.repeat(scale, axis=0).repeat(scale, axis=1) for half in halves]
    spacer = np.full((halves[0].shape[0], gap * scale, 3), 255, dtype=np.uint8)
    return np.concatenate([halves[0], spacer, halves[1]], axis=1)
