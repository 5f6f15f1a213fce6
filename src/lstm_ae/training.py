"""The one fit function that the train stage and the tuning objective share."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence

import keras
import numpy as np

from lstm_ae.config import TrainConfig
from lstm_ae.errors import UserError


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN or infinite; the weights are unusable and must not be saved."""


def compile_autoencoder(model: keras.Model, learning_rate: float) -> keras.Model:
    """Adam on mean squared error, the report's objective."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    return model


def keras_verbosity() -> int:
    """A live progress bar in a terminal; one line per epoch in logs, CI and DVC's captured output;
    nothing under --quiet (which raises the log level above INFO)."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        return 0
    return 1 if sys.stdout.isatty() and not os.environ.get("CI") else 2


def fit(
    model: keras.Model,
    x_train: np.ndarray,
    x_val: np.ndarray,
    cfg: TrainConfig,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | None = None,
) -> dict[str, list[float]]:
    """Train the autoencoder to reproduce its input; return the per-epoch history.

    Early stopping watches the validation loss and restores the best epoch's weights, so the
    returned model is the best one seen, not the last. Side effects (tracking, pruning) come in
    through ``callbacks``.
    """
    compile_autoencoder(model, cfg.learning_rate)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=cfg.patience, restore_best_weights=True
    )
    history = model.fit(
        x_train,
        x_train,
        validation_data=(x_val, x_val),
        batch_size=cfg.batch_size,
        epochs=cfg.max_epochs,
        shuffle=True,
        callbacks=[keras.callbacks.TerminateOnNaN(), early_stopping, *callbacks],
        verbose=keras_verbosity() if verbose is None else verbose,
    )
    losses = history.history.get("loss", [])
    if not losses or not all(math.isfinite(v) for v in losses + history.history.get("val_loss", [])):
        raise TrainingDiverged(
            f"the loss became {losses[-1] if losses else 'undefined'} after {len(losses)} epoch(s); "
            "lower train.learning_rate (or check the input data for NaN) and run train again"
        )
    return {key: [float(v) for v in values] for key, values in history.history.items()}
