"""Pure model definition: the report's LSTM autoencoder, built from a ModelConfig."""

from __future__ import annotations

import keras

from lstm_ae.config import ModelConfig
from lstm_ae.data.sequences import FEATURES, ROWS


@keras.saving.register_keras_serializable(package="lstm_ae")
class RowIndex(keras.layers.Layer):
    """Appends the one-hot index of each of the 32 rows to that step's features.

    The index is the same for every image, so it carries nothing from the input around the
    code; it spares the decoder counting rows with its own state (RepeatVector feeds it the same
    vector at every step). Registered so that saved models load without code of their own.
    """

    def call(self, x):
        rows = keras.ops.eye(ROWS, dtype=x.dtype)[None]
        return keras.ops.concatenate(
            [x, keras.ops.broadcast_to(rows, (keras.ops.shape(x)[0], ROWS, ROWS))], axis=-1
        )

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + ROWS)


def _lstm(
    width: int, return_sequences: bool, name: str, bidirectional: bool, dtype: str
) -> keras.layers.Layer:
    """One LSTM of ``width`` outputs per step; bidirectional: two of half the width, one reading
    the rows top-down and one bottom-up, outputs concatenated (so ``width`` keeps its meaning)."""
    if not bidirectional:
        return keras.layers.LSTM(width, return_sequences=return_sequences, name=name, dtype=dtype)
    inner = keras.layers.LSTM(width // 2, return_sequences=return_sequences, dtype=dtype)
    return keras.layers.Bidirectional(inner, name=name, dtype=dtype)


def build_autoencoder(cfg: ModelConfig) -> keras.Model:
    """Encoder LSTMs -> latent vector -> RepeatVector(32) -> decoder LSTMs -> 96 sigmoid features.

    The last encoder LSTM returns only its final state, so the latent vector (its width) is the
    single path from input to output; nothing is carried around the bottleneck. A bidirectional
    encoder ends in both directions' final states: the top rows are as recent to one of them as
    the bottom rows are to the other, which a single top-down LSTM must carry across 32 steps.
    With ``row_index`` the decoder also reads which row it is producing (see :class:`RowIndex`).

    ``precision`` mixed_bfloat16 gives every layer Keras' mixed policy (bfloat16 math, float32
    weights) and casts the output back to float32, so the loss and every consumer of the model's
    output see float32 as before.
    """
    dtype = cfg.precision
    inputs = keras.Input(shape=(ROWS, FEATURES), name="rows")
    x = inputs
    for i, width in enumerate(cfg.encoder_widths):
        last = i == len(cfg.encoder_widths) - 1
        x = _lstm(width, not last, f"encoder_lstm_{i + 1}", cfg.bidirectional, dtype)(x)
    x = keras.layers.RepeatVector(ROWS, name="repeat_latent", dtype=dtype)(x)
    if cfg.row_index:
        x = RowIndex(name="row_index", dtype=dtype)(x)
    for i, width in enumerate(cfg.decoder_widths):
        x = _lstm(width, True, f"decoder_lstm_{i + 1}", cfg.bidirectional, dtype)(x)
    if cfg.head == "lstm":
        # The report's head. A sigmoid activation makes this LSTM ineligible for cuDNN on a GPU.
        outputs = keras.layers.LSTM(
            FEATURES, activation="sigmoid", return_sequences=True, name="output_lstm", dtype=dtype
        )(x)
    else:
        dense = keras.layers.Dense(FEATURES, activation="sigmoid", dtype=dtype)
        outputs = keras.layers.TimeDistributed(dense, name="output_dense", dtype=dtype)(x)
    if dtype != "float32":
        outputs = keras.layers.Activation("linear", dtype="float32", name="output_float32")(outputs)
    return keras.Model(inputs, outputs, name="lstm_autoencoder")
