"""The one place that turns model settings into a Keras model, whichever family they name."""

from __future__ import annotations

import keras
import numpy as np

from lstm_ae.config import ModelConfig
from lstm_ae.model.autoencoder import build_autoencoder
from lstm_ae.model.restorer import build_restorer
from lstm_ae.model.sweep_ae import build_sweep_autoencoder, start_at_pca


def build_model(cfg: ModelConfig, x_train: np.ndarray | None = None, seed: int = 0) -> keras.Model:
    """The model ``cfg.family`` names, ready to train on ``x_train``.

    The sweep autoencoder starts at PCA fitted on ``x_train`` (:func:`start_at_pca`); without
    training images it keeps its random start (for a model whose weights are loaded next).
    """
    if cfg.family == "restorer":
        return build_restorer(cfg.restorer)
    if cfg.family == "sweep_ae":
        model = build_sweep_autoencoder(cfg.sweep)
        return model if x_train is None else start_at_pca(model, x_train, seed)
    return build_autoencoder(cfg)
