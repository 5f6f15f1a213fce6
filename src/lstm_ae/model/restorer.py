"""Pure model definition: the restorer, LSTMs that sweep the image with no bottleneck.

The autoencoder squeezes every image through one code vector, which caps what any output can
hold near 21-24 dB whatever the corruption. A restorer needs every pixel's detail, so it keeps
one feature vector per pixel all the way through, as ReNet (Visin et al. 2015) and the
four-direction IRNN of ION (Bell et al. 2016) do: a bidirectional LSTM runs along every row,
then another along every column of its output, so after one row-then-column pair each pixel's
features have seen the whole image. A per-pixel projection reads the pixels in and writes a
correction out, which is added to the corrupted input: the model learns what to change, and the
untrained model (whose last projection starts at zero) returns its input unchanged.

The sweeps have no fixed length, so the restorer takes images of any size, in the same row
layout as the autoencoder: (batch, height, width * 3).
"""

from __future__ import annotations

import keras

from lstm_ae.config import RestorerConfig

CHANNELS = 3


@keras.saving.register_keras_serializable(package="lstm_ae")
class Sweep(keras.layers.Layer):
    """A bidirectional LSTM run along every row (``axis="rows"``) or every column of a
    (batch, height, width, features) map, keeping every position's output.

    The rows (or columns) of all images of the batch become one batch of sequences, so one LSTM
    call sweeps them all; ``units`` per direction, so each position ends with ``2 * units``.
    """

    def __init__(self, units: int, axis: str, **kwargs) -> None:
        super().__init__(**kwargs)
        if axis not in ("rows", "columns"):
            raise ValueError(f"axis must be 'rows' or 'columns', got {axis!r}")
        self.units, self.axis = units, axis
        self.rnn = keras.layers.Bidirectional(
            keras.layers.LSTM(units, return_sequences=True, dtype=self.dtype_policy), dtype=self.dtype_policy
        )

    def build(self, input_shape) -> None:
        self.rnn.build((None, None, input_shape[-1]))

    def call(self, x):
        if self.axis == "columns":
            x = keras.ops.transpose(x, (0, 2, 1, 3))
        shape = keras.ops.shape(x)
        sequences = keras.ops.reshape(x, (shape[0] * shape[1], shape[2], x.shape[-1]))
        y = keras.ops.reshape(self.rnn(sequences), (shape[0], shape[1], shape[2], 2 * self.units))
        return keras.ops.transpose(y, (0, 2, 1, 3)) if self.axis == "columns" else y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2 * self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "axis": self.axis}


@keras.saving.register_keras_serializable(package="lstm_ae")
class RowsToPixels(keras.layers.Layer):
    """(batch, height, width * 3) rows -> (batch, height, width, 3) pixels, for any width."""

    def call(self, rows):
        shape = keras.ops.shape(rows)
        return keras.ops.reshape(rows, (shape[0], shape[1], -1, CHANNELS))

    def compute_output_shape(self, input_shape):
        width = None if input_shape[2] is None else input_shape[2] // CHANNELS
        return (input_shape[0], input_shape[1], width, CHANNELS)


@keras.saving.register_keras_serializable(package="lstm_ae")
class PixelsToRows(keras.layers.Layer):
    """(batch, height, width, 3) pixels -> (batch, height, width * 3) rows."""

    def call(self, pixels):
        shape = keras.ops.shape(pixels)
        return keras.ops.reshape(pixels, (shape[0], shape[1], shape[2] * CHANNELS))

    def compute_output_shape(self, input_shape):
        width = None if input_shape[2] is None else input_shape[2] * CHANNELS
        return (input_shape[0], input_shape[1], width)


@keras.saving.register_keras_serializable(package="lstm_ae")
class ClipWhenPredicting(keras.layers.Layer):
    """Clips to [0, 1] outside training. Training sees the unclipped sum, so a pixel that
    overshoots still gets a gradient back towards the target; every prediction and every
    validation score sees a valid image."""

    def call(self, x, training=None):
        return x if training else keras.ops.clip(x, 0.0, 1.0)


def sweep_stack(x, units: int, blocks: int, sweeps: str = "both"):
    """``blocks`` x (row sweep, column sweep) over a (batch, height, width, features) map.

    The ablations keep the depth and widths: ``rows`` drops the column sweeps (each position
    sees its row only), ``none`` makes every sweep a per-position Dense layer of the same output
    width (no position sees another)."""
    for i in range(blocks):
        for axis in ("rows", "columns"):
            name = f"{axis}_{i + 1}"
            if sweeps == "none":
                x = keras.layers.Dense(2 * units, activation="tanh", name=f"pointwise_{name}")(x)
            elif axis == "rows" or sweeps == "both":
                x = Sweep(units, axis, name=f"sweep_{name}")(x)
    return x


def build_restorer(cfg: RestorerConfig) -> keras.Model:
    """Pixels -> Dense(features) -> ``blocks`` x (row sweep, column sweep) -> Dense(3) correction,
    added to the input.

    ``sweeps: false`` is the ablation: each sweep becomes a per-pixel Dense layer of the same
    output width, so the model has the same depth and widths but no pixel sees another (and
    far fewer weights: 6,595 against 41,795 at the defaults, since a Dense layer has no
    recurrent weights and one direction); what the full model gains over it is what the sweeps
    bring.
    """
    rows = keras.Input(shape=(None, None), name="rows")
    pixels = RowsToPixels(name="pixels")(rows)
    x = keras.layers.Dense(cfg.features, activation="tanh", name="project_in")(pixels)
    x = sweep_stack(x, cfg.units, cfg.blocks, "both" if cfg.sweeps else "none")
    correction = keras.layers.Dense(CHANNELS, kernel_initializer="zeros", name="correction")(x)
    restored = keras.layers.Add(name="residual")([pixels, correction])
    outputs = ClipWhenPredicting(name="clip")(PixelsToRows(name="rows_out")(restored))
    return keras.Model(rows, outputs, name="lstm_restorer" if cfg.sweeps else "pointwise_restorer")
