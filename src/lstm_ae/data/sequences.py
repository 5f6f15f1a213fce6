"""Pure array transforms: uint8 images <-> [0, 1] row sequences, and the train/validation split."""

from __future__ import annotations

import numpy as np

ROWS = 32  # timesteps: one per image row
FEATURES = 96  # 32 pixels x RGB, interleaved as the report's reshape(32, 96) of an HWC image


def to_sequences(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) HWC images -> (N, 32, 96) sequences, dtype kept (uint8 on disk)."""
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"expected images of shape (N, 32, 32, 3), got {images.shape}")
    return images.reshape(len(images), ROWS, FEATURES)


def to_images(sequences: np.ndarray) -> np.ndarray:
    """(N, 32, 96) sequences -> (N, 32, 32, 3) HWC images; the exact inverse of to_sequences."""
    if sequences.ndim != 3 or sequences.shape[1:] != (ROWS, FEATURES):
        raise ValueError(f"expected sequences of shape (N, {ROWS}, {FEATURES}), got {sequences.shape}")
    return sequences.reshape(len(sequences), 32, 32, 3)


def scale(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]. Data stays uint8 on disk (4x smaller) and is scaled on load."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
    return pixels.astype(np.float32) / np.float32(255.0)


def split_train_val(
    x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle and hold out ``val_fraction`` for validation: ``(x_train, x_val, y_train, y_val)``.

    scikit-learn's train_test_split with ``random_state=seed`` is what the report used, so the
    default (0.2, 42) gives the report's exact split of the official training set. It is imported
    here, not at the top: every stage loads the config, which reaches this module, and scikit-learn
    costs about a second of start-up to the stages that never split (fetch, eda).
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=val_fraction, random_state=seed)
    return x_train, x_val, y_train, y_val
