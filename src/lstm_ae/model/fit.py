"""The one fit function that the train stage and the tuning objective share, for every task."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence

import keras
import numpy as np

from lstm_ae.config import TrainConfig
from lstm_ae.data.corruption import LEVELS, Corruption
from lstm_ae.errors import UserError
from lstm_ae.startup import deferred_interrupts, raise_pending

IDENTITY = Corruption("reconstruct")


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN or infinite; the weights are unusable and must not be saved."""


class InterruptBetweenSteps(keras.callbacks.Callback):
    """Raises a Ctrl-C or SIGTERM kept by :func:`~lstm_ae.startup.deferred_interrupts` before
    each epoch and each training or validation step: there no library is midway through
    anything, unlike in the MLflow logging at an epoch's end. A step is well under a second, so
    the wait is not felt. (Batch *begin* hooks: a batch *end* hook would make Keras fetch every
    step's loss from the device.)"""

    def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
        raise_pending()

    def on_train_batch_begin(self, batch: int, logs: object = None) -> None:
        raise_pending()

    def on_test_batch_begin(self, batch: int, logs: object = None) -> None:
        raise_pending()


WARMUP_SHARE = 0.1  # cosine schedule: the share of all steps spent warming up
COOLDOWN_SHARE = 0.2  # cooldown schedule: the share of all steps spent decaying to zero


@keras.saving.register_keras_serializable(package="lstm_ae")
class Cooldown(keras.optimizers.schedules.LearningRateSchedule):
    """``rate`` until the last ``cooldown_steps`` of ``total_steps``, then linearly down to zero.

    The "warmup-stable-decay" shape without the warm-up (Hagele et al. 2024, "Scaling laws and
    compute-optimal training beyond fixed training durations"): training runs at the full rate for
    most of the budget, where an under-trained model gains most, and the short linear decay at the
    end removes the noise of large steps. Keras has no such schedule built in.
    """

    def __init__(self, rate: float, total_steps: int, cooldown_steps: int) -> None:
        self.rate, self.total_steps, self.cooldown_steps = rate, total_steps, max(1, cooldown_steps)

    def __call__(self, step):
        left = keras.ops.maximum(float(self.total_steps) - keras.ops.cast(step, "float32"), 0.0)
        return self.rate * keras.ops.minimum(1.0, left / float(self.cooldown_steps))

    def get_config(self) -> dict:
        return {"rate": self.rate, "total_steps": self.total_steps, "cooldown_steps": self.cooldown_steps}


def learning_rate(
    cfg: TrainConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Adam's learning rate, fixed or per step.

    cosine: warm up linearly from a tenth of ``cfg.learning_rate`` to it over the first tenth of
    the ``max_epochs`` budget (large early steps on a fresh LSTM diverge more easily), then follow
    a half cosine down to zero at the last step, so the budget's final epochs fine-tune. Early
    stopping may end a run before the end of the schedule; it restores the best epoch either way.

    cooldown: ``cfg.learning_rate`` for the first four fifths of the budget, then linearly down to
    zero at the last step (:class:`Cooldown`).
    """
    if cfg.schedule == "constant":
        return cfg.learning_rate
    total = max(1, steps_per_epoch * cfg.max_epochs)
    if cfg.schedule == "cooldown":
        return Cooldown(cfg.learning_rate, total, round(total * COOLDOWN_SHARE))
    warmup = int(total * WARMUP_SHARE)
    return keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate / 10,
        decay_steps=total - warmup,
        warmup_target=cfg.learning_rate,
        warmup_steps=warmup,
    )


def compile_autoencoder(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """Adam on mean squared error, the report's objective; gradients clipped if ``cfg.global_clipnorm``.

    Adam's slots are built here, before the first step. Keras on TensorFlow otherwise creates
    them inside the first call of its compiled training step, and a ``tf.function`` that
    creates variables on its first call is traced twice (tensorflow/tensorflow#48851): for these
    LSTMs that is seconds of CPU at the start of every run and every tuning trial, for nothing.
    """
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate(cfg, steps_per_epoch), global_clipnorm=cfg.global_clipnorm
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def keras_verbosity() -> int:
    """A live progress bar in a terminal; one line per epoch in logs, CI and DVC's captured output;
    nothing under --quiet (which raises the log level above INFO)."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        return 0
    return 1 if sys.stdout.isatty() and not os.environ.get("CI") else 2


def noisy_batches(clean: np.ndarray, corruption: Corruption, batch_size: int, seed: int):
    """A tf.data pipeline of (noisy, clean) training batches, noise drawn inside the graph.

    Each epoch reshuffles the images and draws fresh noise (the dataset is iterated anew each
    epoch, and ``Dataset.random(rerandomize_each_iteration=True)`` then yields new per-batch seeds
    for ``stateless_normal``), yet the whole sequence is fixed by ``seed``. Drawing the noise in
    Python, batch by batch, made denoise epochs about 30% slower than reconstruct ones; here it
    runs in TensorFlow's threads, ahead of the training step (prefetch). As in
    :meth:`Corruption.apply`, the noisy images are clipped to [0, 1] and rounded to 8 bits.
    """
    import tensorflow as tf

    sigma, levels = float(corruption.strength), float(LEVELS)

    def corrupt(images, noise_seed):
        noise = tf.random.stateless_normal(tf.shape(images), seed=noise_seed, dtype=images.dtype)
        noisy = tf.clip_by_value(images + noise * sigma, 0.0, 1.0)
        return tf.round(noisy * levels) / levels, images

    images = (
        tf.data.Dataset.from_tensor_slices(np.asarray(clean, dtype=np.float32))
        .shuffle(len(clean), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return (
        tf.data.Dataset.zip(images, seeds)
        .map(corrupt, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def fit(
    model: keras.Model,
    x_train: np.ndarray,
    x_val: np.ndarray,
    cfg: TrainConfig,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | None = None,
    corruption: Corruption = IDENTITY,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Train the autoencoder to output the clean ``x_train`` from its corrupted copy (the clean
    rows themselves for reconstruct); return the per-epoch history.

    The validation inputs are corrupted once, with a fixed seed, so every run and every tuning
    trial is scored on the same inputs. Early stopping watches the validation loss and restores
    the best epoch's weights, so the returned model is the best one seen, not the last. Side
    effects (tracking, pruning) come in through ``callbacks``. A Ctrl-C or SIGTERM during the
    fit is raised between two steps (see :class:`InterruptBetweenSteps`).
    """
    compile_autoencoder(model, cfg, steps_per_epoch=math.ceil(len(x_train) / cfg.batch_size))
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=cfg.patience, restore_best_weights=True
    )
    if corruption.is_random:
        # The dataset shuffles itself each epoch; Keras cannot shuffle a tf.data pipeline.
        train_data = {"x": noisy_batches(x_train, corruption, cfg.batch_size, seed), "shuffle": False}
    else:  # identity or blur: one fixed input array, the fastest path through Keras
        train_data = {
            "x": corruption.apply(x_train),
            "y": x_train,
            "batch_size": cfg.batch_size,
            "shuffle": True,
        }
    with deferred_interrupts():
        history = model.fit(
            **train_data,
            validation_data=(corruption.fixed(x_val, seed, "val"), x_val),
            validation_batch_size=cfg.batch_size,
            epochs=cfg.max_epochs,
            callbacks=[InterruptBetweenSteps(), keras.callbacks.TerminateOnNaN(), early_stopping, *callbacks],
            verbose=keras_verbosity() if verbose is None else verbose,
        )
    losses = history.history.get("loss", [])
    if not losses or not all(math.isfinite(v) for v in losses + history.history.get("val_loss", [])):
        raise TrainingDiverged(
            f"the loss became {losses[-1] if losses else 'undefined'} after {len(losses)} epoch(s); "
            "lower train.learning_rate (or check the input data for NaN) and run train again"
        )
    return {key: [float(v) for v in values] for key, values in history.history.items()}
