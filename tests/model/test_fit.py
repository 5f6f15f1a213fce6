"""fit on a tiny model: the history, early stopping with best-weight restore, divergence, callbacks."""

from __future__ import annotations

import itertools
import signal

import keras
import numpy as np
import pytest

from lstm_ae.config import ModelConfig, TrainConfig
from lstm_ae.data.corruption import Corruption
from lstm_ae.errors import Terminated
from lstm_ae.model.autoencoder import build_autoencoder
from lstm_ae.model.fit import TrainingDiverged, fit, learning_rate, noisy_batches
from lstm_ae.startup import handle_signals

TINY = ModelConfig(
    encoder_widths=(8, 4), decoder_widths=(4,), head="dense", bidirectional=False, row_index=False
)


def gradients(n: int, seed: int) -> np.ndarray:
    """Smooth images: each sample blends a vertical and a horizontal ramp with its own weights."""
    a, b = np.random.default_rng(seed).uniform(0, 1, (2, n, 1, 1))
    rows = np.linspace(0, 1, 32)[None, :, None]
    features = np.linspace(0, 1, 96)[None, None, :]
    return ((a * rows + b * features) / 2).astype(np.float32)


def train_config(**changes: float | str) -> TrainConfig:
    base = {"learning_rate": 0.01, "batch_size": 16, "max_epochs": 3, "patience": 10, "schedule": "constant"}
    settings = base | changes
    return TrainConfig(**settings)


@pytest.fixture
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_autoencoder(TINY)


class EpochRecorder(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []
        self.logged: list[set[str]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append(epoch)
        self.logged.append(set(logs or {}))


def test_loss_decreases_and_callbacks_run_each_epoch(model: keras.Model) -> None:
    recorder = EpochRecorder()
    history = fit(model, gradients(64, 0), gradients(16, 1), train_config(), callbacks=[recorder], verbose=0)
    assert len(history["loss"]) == len(history["val_loss"]) == 3  # bounded by max_epochs
    assert history["loss"][-1] < history["loss"][0]
    assert all(isinstance(v, float) for v in history["loss"])
    assert recorder.epochs == [0, 1, 2]
    assert all({"loss", "val_loss"} <= keys for keys in recorder.logged)


class SignalDuringLogging(keras.callbacks.Callback):
    """At the end of epoch 0 a signal arrives, then the epoch's logging goes on (where MLflow would
    be midway through writing the run's metrics)."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum
        self.logging_finished = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        signal.raise_signal(self.signum)  # Python runs the handler before this call returns
        self.logging_finished = True


@pytest.mark.parametrize(
    ("signum", "raised"),
    [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_during_an_epochs_logging_is_raised_before_the_next_step_not_inside_it(
    model: keras.Model, restore_signal_handling: None, signum: int, raised: type
) -> None:
    handle_signals()  # as the CLI does
    signaller, recorder = SignalDuringLogging(signum), EpochRecorder()
    with pytest.raises(raised):
        fit(
            model,
            gradients(64, 0),
            gradients(16, 1),
            train_config(),
            callbacks=[signaller, recorder],
            verbose=0,
        )
    # Epoch 0's callbacks all ran to the end; epoch 1 never began.
    assert signaller.logging_finished and recorder.epochs == [0]


def test_without_our_handling_the_signal_cuts_the_logging_short(
    model: keras.Model, restore_signal_handling: None
) -> None:
    """The control case: Python's own handler raises inside the callback, wherever it is."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signaller, recorder = SignalDuringLogging(signal.SIGINT), EpochRecorder()
    with pytest.raises(KeyboardInterrupt):
        fit(
            model,
            gradients(64, 0),
            gradients(16, 1),
            train_config(),
            callbacks=[signaller, recorder],
            verbose=0,
        )
    assert not signaller.logging_finished and recorder.epochs == []


class Sabotage(keras.callbacks.Callback):
    """From the second epoch on, pin the output near 0: zero weights and a saturated sigmoid bias.

    Zero LSTM weights give zero activations and a saturated sigmoid has no gradient, so training
    cannot recover and the validation loss after epoch 1 is guaranteed to be the best.
    """

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch >= 1:
            weights = [np.zeros_like(w) for w in self.model.get_weights()]
            weights[-1][:] = -30.0  # the Dense head's bias
            self.model.set_weights(weights)


def test_the_training_step_is_traced_once_for_the_whole_fit(model: keras.Model) -> None:
    """Adam's slots exist before the first step (compile_autoencoder builds them), so TensorFlow
    traces the step once, not a second time for the variables its first call would create."""
    traced = []
    step = model.train_step
    model.train_step = lambda data: traced.append(data) or step(data)
    fit(model, gradients(40, 0), gradients(8, 1), train_config(max_epochs=2), verbose=0)  # 16, 16, 8 a batch
    assert len(traced) == 1


def test_early_stopping_stops_and_restores_the_best_weights(model: keras.Model) -> None:
    x_val = gradients(16, 1)
    cfg = train_config(max_epochs=6, patience=2)
    history = fit(model, gradients(64, 0), x_val, cfg, callbacks=[Sabotage()], verbose=0)
    # Epoch 1 is best; epochs 2 and 3 do not improve, so patience 2 stops after epoch 3 of 6.
    assert len(history["val_loss"]) == 3
    assert history["val_loss"][0] < min(history["val_loss"][1:])
    restored = model.evaluate(x_val, x_val, batch_size=16, verbose=0)
    assert restored == pytest.approx(history["val_loss"][0], rel=1e-5)


def test_nan_loss_raises_training_diverged(model: keras.Model) -> None:
    x_train = gradients(64, 0)
    x_train[3, 4, 5] = np.nan
    with pytest.raises(TrainingDiverged, match="train.learning_rate") as error:
        fit(model, x_train, gradients(16, 1), train_config(), verbose=0)
    assert "nan" in str(error.value) and "\n" not in str(error.value)


DENOISE = Corruption("denoise", 0.1)


def epoch_of(batches) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the dataset, as Keras makes at each epoch."""
    inputs, targets = zip(*((x.numpy(), y.numpy()) for x, y in batches), strict=True)
    return np.concatenate(inputs), np.concatenate(targets)


def test_noisy_batches_hold_each_clean_image_once_per_epoch_with_fresh_noise() -> None:
    clean = gradients(50, 0)
    batches = noisy_batches(clean, DENOISE, batch_size=16, seed=0)
    assert [len(x) for x, _ in batches] == [16, 16, 16, 2]
    inputs, targets = epoch_of(batches)
    # Every clean image is a target exactly once (the rows of `gradients` are all different).
    assert sorted(map(bytes, targets)) == sorted(map(bytes, clean))
    noise = inputs - targets
    assert noise.std() == pytest.approx(0.1, rel=0.05) and inputs.min() >= 0 and inputs.max() <= 1
    np.testing.assert_array_equal(inputs, np.rint(inputs * 255) / np.float32(255))  # 8-bit levels
    inputs_2, targets_2 = epoch_of(batches)  # the next epoch iterates the dataset again
    assert not np.array_equal(targets_2, targets)  # reshuffled
    assert sorted(map(bytes, targets_2)) == sorted(map(bytes, clean))
    order = {bytes(t): i for i, t in enumerate(targets_2)}
    same_image = [order[bytes(t)] for t in targets]
    assert not np.array_equal(inputs_2[same_image], inputs)  # fresh noise for the same images
    replay = noisy_batches(clean, DENOISE, batch_size=16, seed=0)
    epoch_of(replay)  # `inputs` came from the second pass over `batches` (the first counted batches)
    np.testing.assert_array_equal(epoch_of(replay)[0], inputs)  # the same seed replays the same noise
    assert not np.array_equal(epoch_of(noisy_batches(clean, DENOISE, 16, seed=1))[0], inputs)


@pytest.mark.parametrize("corruption", [Corruption("deblur", 1.0), DENOISE], ids=["deblur", "denoise"])
def test_fit_scores_the_corrupted_validation_inputs_against_the_clean_images(model, corruption) -> None:
    x_train, x_val = gradients(64, 0), gradients(16, 1)
    seen = {}
    keras_fit = model.fit

    def spy(**kwargs):
        seen.update(kwargs)
        return keras_fit(**kwargs)

    model.fit = spy
    history = fit(model, x_train, x_val, train_config(max_epochs=2), verbose=0, corruption=corruption, seed=7)
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    inputs = corruption.fixed(x_val, 7, "val")
    val_inputs, val_targets = seen["validation_data"]
    np.testing.assert_array_equal(val_inputs, inputs)
    assert val_targets is x_val and not np.array_equal(inputs, x_val)
    best = min(history["val_loss"])
    assert model.evaluate(inputs, x_val, batch_size=16, verbose=0) == pytest.approx(best, rel=1e-5)
    if corruption.is_random:
        assert "y" not in seen  # (noisy, clean) pairs come from the tf.data pipeline
        assert sorted(map(bytes, epoch_of(seen["x"])[1])) == sorted(map(bytes, x_train))
    else:
        np.testing.assert_array_equal(seen["x"], corruption.apply(x_train))
        assert seen["y"] is x_train


def test_constant_schedule_is_the_plain_learning_rate() -> None:
    assert learning_rate(train_config(learning_rate=0.002), steps_per_epoch=10) == 0.002


def test_cosine_schedule_warms_up_to_the_rate_then_decays_to_zero_at_max_epochs() -> None:
    cfg = train_config(learning_rate=0.002, max_epochs=10, schedule="cosine")
    schedule = learning_rate(cfg, steps_per_epoch=10)  # 100 steps: 10 of warm-up, 90 of decay
    rate = [float(schedule(step)) for step in range(101)]
    assert rate[0] == pytest.approx(0.0002)
    assert rate[10] == pytest.approx(0.002)
    assert max(rate) == pytest.approx(0.002)
    assert all(a <= b for a, b in itertools.pairwise(rate[:11]))  # rising during warm-up
    assert all(a >= b for a, b in itertools.pairwise(rate[10:]))  # falling after it
    assert rate[55] == pytest.approx(0.001, rel=1e-3)  # halfway through the decay: half the rate
    assert rate[100] == pytest.approx(0.0, abs=1e-9)


def test_cooldown_schedule_holds_the_rate_then_falls_linearly_to_zero_over_the_last_fifth() -> None:
    cfg = train_config(learning_rate=0.002, max_epochs=10, schedule="cooldown")
    schedule = learning_rate(cfg, steps_per_epoch=10)  # 100 steps: 80 at the rate, 20 of decay
    rate = [float(schedule(step)) for step in range(105)]
    assert rate[:81] == pytest.approx([0.002] * 81)
    assert rate[90] == pytest.approx(0.001)  # halfway through the cooldown: half the rate
    assert all(a > b for a, b in itertools.pairwise(rate[80:101]))
    assert rate[100:] == pytest.approx([0.0] * 5, abs=1e-12)  # past the budget (never negative)


@pytest.mark.parametrize("schedule", ["cosine", "cooldown"])
def test_fit_with_a_decaying_schedule_learns_and_the_model_saves_with_its_optimizer(
    model: keras.Model, schedule: str, tmp_path
) -> None:
    history = fit(model, gradients(64, 0), gradients(16, 1), train_config(schedule=schedule), verbose=0)
    assert history["loss"][-1] < history["loss"][0]
    model.save(tmp_path / "model.keras")  # the train stage saves the optimizer, schedule included
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.optimizer.learning_rate) is type(model.optimizer.learning_rate)
    np.testing.assert_allclose(
        loaded.predict(gradients(4, 2), verbose=0), model.predict(gradients(4, 2), verbose=0), atol=1e-6
    )


def test_fit_with_a_gradient_clip_learns_and_the_clip_is_saved_with_the_optimizer(
    model: keras.Model, tmp_path
) -> None:
    history = fit(model, gradients(64, 0), gradients(16, 1), train_config(global_clipnorm=0.05), verbose=0)
    assert history["loss"][-1] < history["loss"][0]
    assert model.optimizer.global_clipnorm == 0.05
    model.save(tmp_path / "model.keras")
    assert keras.models.load_model(tmp_path / "model.keras").optimizer.global_clipnorm == 0.05


def test_no_clip_by_default_as_in_the_report() -> None:
    assert train_config().global_clipnorm is None
