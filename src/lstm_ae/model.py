"""Pure model definition: the report's LSTM autoencoder, built from a ModelConfig."""

from __future__ import annotations

import keras

from lstm_ae.config import ModelConfig
from lstm_ae.sequences import FEATURES, ROWS


def build_autoencoder(cfg: ModelConfig) -> keras.Model:
    """Encoder LSTMs -> latent vector -> RepeatVector(32) -> decoder LSTMs -> 96 sigmoid features.

    The last encoder LSTM returns only its final state, so the latent vector (its width) is the
    single path from input to output; nothing is carried around the bottleneck.
    """
    inputs = keras.Input(shape=(ROWS, FEATURES), name="rows")
    x = inputs
    for i, width in enumerate(cfg.encoder_widths):
        last = i == len(cfg.encoder_widths) - 1
        x = keras.layers.LSTM(width, return_sequences=not last, name=f"encoder_lstm_{i + 1}")(x)
    x = keras.layers.RepeatVector(ROWS, name="repeat_latent")(x)
    for i, width in enumerate(cfg.decoder_widths):
        x = keras.layers.LSTM(width, return_sequences=True, name=f"decoder_lstm_{i + 1}")(x)
    if cfg.head == "lstm":
        # The report's head. A sigmoid activation makes this LSTM ineligible for cuDNN on a GPU.
        outputs = keras.layers.LSTM(FEATURES, activation="sigmoid", return_sequences=True, name="output_lstm")(x)
    else:
        dense = keras.layers.Dense(FEATURES, activation="sigmoid")
        outputs = keras.layers.TimeDistributed(dense, name="output_dense")(x)
    return keras.Model(inputs, outputs, name="lstm_autoencoder")
