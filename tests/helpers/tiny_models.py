"""Tiny untrained model files, one of each family, for tests of what loads and serves them."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from lstm_ae.config import RestorerConfig, SweepConfig
from lstm_ae.model.restorer import build_restorer
from lstm_ae.model.sweep_ae import build_sweep_autoencoder, start_at_pca


def save_restorer(path: Path) -> Path:
    """A restorer (any image size) whose untrained correction is zero: it returns its input exactly."""
    keras.utils.set_random_seed(0)
    build_restorer(RestorerConfig(features=4, units=4, blocks=1)).save(path)
    return path


def save_fixed_size_model(path: Path) -> Path:
    """A stand-in for the autoencoder: the same (32, 96) row input, one Dense layer, seconds to save."""
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((32, 96)), keras.layers.Dense(96, activation="sigmoid")]).save(path)
    return path


def save_sweep_autoencoder(path: Path, code_size: int = 8) -> Path:
    """A sweep autoencoder with a ``code_size``-float code, started at PCA of random images."""
    keras.utils.set_random_seed(0)
    model = build_sweep_autoencoder(SweepConfig(code_size=code_size, features=4, units=4, patch=4))
    start_at_pca(model, np.random.default_rng(0).random((64, 32, 96), dtype=np.float32)).save(path)
    return path
