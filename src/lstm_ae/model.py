"""Pure model definition: the report's LSTM autoencoder, built from a ModelConfig."""

from __future__ import annotations

import keras

from lstm_ae.config import ModelConfig
from lstm_ae.sequences import FEATURES, ROWS


@keras.saving.register_keras_serializable(package="lstm_ae")
class RowIndex(keras.layers.Layer):
    """Appends the one-hot index of each of the 32 rows to that step's features.

    The index is the same for every image, so it carries nothing from the input around the
    code; it spares the decoder counting rows with its own state (RepeatVector feeds it the same
    vector at every step). Registered so that saved models load without code of their own.
    """

    def call(self, x):
        rows = keras.ops.eye(ROWS, dtype=x.dtype)[None]
        return keras.ops.concatenate([x, keras.ops.broadcast_to(rows, (keras.ops.shape(x)[0], ROWS, ROWS))], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + ROWS)


def _lstm(width: int, return_sequences: bool, name: str, bidirectional: bool) -> keras.layers.Layer:
    """One LSTM of ``width`` outputs per step; bidirectional: two of half the width, one reading
    the rows top-down and one bottom-up, outputs concatenated (so ``width`` keeps its meaning)."""
    if not bidirectional:
        return keras.layers.LSTM(width, return_sequences=return_sequences, name=name)
    return keras.layers.Bidirectional(keras.layers.LSTM(width // 2, return_sequences=return_sequences), name=name)


def build_autoencoder(cfg: ModelConfig) -> keras.Model:
    """Encoder LSTMs -> latent vector -> RepeatVector(32) -> decoder LSTMs -> 96 sigmoid features.

    The last encoder LSTM returns only its final state, so the latent vector (its width) is the
    single path from input to output; nothing is carried around the bottleneck. A bidirectional
    encoder ends in both directions' final states: the top rows are as recent to one of them as
    the bottom rows are to the other, which a single top-down LSTM must carry across 32 steps.
    With ``row_index`` the decoder also reads which row it is producing (see :class:`RowIndex`).
    """
    inputs = keras.Input(shape=(ROWS, FEATURES), name="rows")
    x = inputs
    for i, width in enumerate(cfg.encoder_widths):
        last = i == len(cfg.encoder_widths) - 1
        x = _lstm(width, not last, f"encoder_lstm_{i + 1}", cfg.bidirectional)(x)
    x = keras.layers.RepeatVector(ROWS, name="repeat_latent")(x)
    if cfg.row_index:
        x = RowIndex(name="row_index")(x)
    for i, width in enumerate(cfg.decoder_widths):
        x = _lstm(width, True, f"decoder_lstm_{i + 1}", cfg.bidirectional)(x)
    if cfg.head == "lstm":
        # The report's head. A sigmoid activation makes this LSTM ineligible for cuDNN on a GPU.
        outputs = keras.layers.LSTM(FEATURES, activation="sigmoid", return_sequences=True, name="output_lstm")(x)
    else:
        dense = keras.layers.Dense(FEATURES, activation="sigmoid")
        outputs = keras.layers.TimeDistributed(dense, name="output_dense")(x)
    return keras.Model(inputs, outputs, name="lstm_autoencoder")
