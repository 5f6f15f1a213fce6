"""The one place that turns model settings into a Keras model, whichever family they name."""

from __future__ import annotations

import keras

from lstm_ae.config import ModelConfig
from lstm_ae.model.autoencoder import build_autoencoder
from lstm_ae.model.restorer import build_restorer


def build_model(cfg: ModelConfig) -> keras.Model:
    """The autoencoder or the restorer, as ``cfg.family`` says."""
    return build_restorer(cfg.restorer) if cfg.family == "restorer" else build_autoencoder(cfg)
