"""The objective of a study: one trial trains the model its parameters stand for and returns the
validation MSE, reporting each epoch to Optuna's pruner.

Nothing here talks to MLflow or reads files: the worker injects tracking (as a context manager
that yields Keras callbacks) and the data, so the objective is the training code plus a search
space, as in optuna-examples. It imports Keras, so only the processes that train import it.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterator, Mapping

import keras
import numpy as np
import optuna

from lstm_ae.config import ModelConfig, SearchSpace, TrainConfig
from lstm_ae.data.corruption import Corruption
from lstm_ae.model.build import build_model
from lstm_ae.model.fit import IDENTITY, fit
from lstm_ae.tuning.search import configs_from_params, suggest_params

# A tracker wraps one trial: it receives the trial and its configs, yields the Keras callbacks
# to add (per-epoch logging) and a dict that the objective fills with the trial's final metrics.
Tracker = Callable[
    [optuna.Trial, ModelConfig, TrainConfig], contextlib.AbstractContextManager[tuple[list, dict]]
]


# Not optuna_integration's KerasPruningCallback: 0-based steps; it prunes on NaN and on the last epoch.
class PruningCallback(keras.callbacks.Callback):
    """Report each epoch's validation loss to Optuna and stop the fit if the pruner says so.

    The last epoch is reported but never pruned: stopping then saves nothing and would throw
    away a finished trial's result.
    """

    def __init__(self, trial: optuna.Trial, last_epoch: int | None = None) -> None:
        super().__init__()
        self.trial, self.last_epoch = trial, last_epoch

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        val_loss = (logs or {}).get("val_loss")
        if val_loss is None or not math.isfinite(val_loss):
            return  # a NaN loss is TerminateOnNaN's business: the trial fails, it is not pruned
        self.trial.report(float(val_loss), step=epoch + 1)
        if epoch + 1 != self.last_epoch and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (val_loss {val_loss:.5f})")


class Objective:
    """Validation MSE of one trial: build the model from the trial's config and fit it on the
    task's (corrupted input, clean target) pairs.

    The test split never reaches this object, so nothing is chosen on test data.
    """

    def __init__(
        self,
        x_train: np.ndarray,
        x_val: np.ndarray,
        space: SearchSpace,
        train: TrainConfig,
        max_epochs: int,
        seed: int,
        tracker: Tracker,
        corruption: Corruption = IDENTITY,
        precision: str = "float32",
        base: ModelConfig | None = None,
    ) -> None:
        self.x_train, self.x_val = x_train, x_val
        self.space, self.train, self.max_epochs, self.seed = space, train, max_epochs, seed
        self.tracker, self.corruption, self.precision, self.base = tracker, corruption, precision, base

    def __call__(self, trial: optuna.Trial) -> float:
        family = self.base.family if self.base is not None else "autoencoder"
        params = suggest_params(trial, self.space, family)
        model_cfg, train_cfg = configs_from_params(
            params, self.train, self.max_epochs, self.precision, self.base
        )
        keras.utils.set_random_seed(self.seed + trial.number)
        with self.tracker(trial, model_cfg, train_cfg) as (callbacks, results), _fresh_keras():
            model = build_model(model_cfg, self.x_train, self.seed)
            # Tracking callbacks first: a pruned epoch must still be logged before the fit stops.
            pruning = PruningCallback(trial, train_cfg.max_epochs)
            history = fit(
                model,
                self.x_train,
                self.x_val,
                train_cfg,
                callbacks=[*callbacks, pruning],
                verbose=0,
                corruption=self.corruption,
                seed=self.seed,
            )
            value = min(history["val_loss"])
            results.update(
                {"val_mse": value, "epochs": len(history["val_loss"]), "param_count": model.count_params()}
            )
            return value


@contextlib.contextmanager
def _fresh_keras() -> Iterator[None]:
    """Free the trial's graph and weights afterwards, so memory stays flat over many trials."""
    try:
        yield
    finally:
        keras.backend.clear_session()
        gc.collect()
