"""The report's model with each LSTM's input projection hoisted out of its loop (issue 4, goal 3).

Keras' LSTM cell multiplies every step's input by its kernel inside the recurrence: 32 small
(batch x features) products per layer, and for the decoder, whose input is RepeatVector(code),
32 products of the same vector. Here the projection ``x @ kernel + bias`` is one Dense over the
whole sequence (for the decoder: over the code, once, then repeated), and the loop keeps only
``h @ recurrent_kernel`` and the gates. Same parameters, same function: ``python
benchmarks/hoisted_lstm.py`` copies a Keras model's weights into this one and prints the largest
difference of their outputs. throughput.py times it as the variants report_hoisted*.
"""

from __future__ import annotations

import keras
from keras import ops

from lstm_ae.sequences import FEATURES, ROWS


class ProjectedLSTMCell(keras.layers.Layer):
    """An LSTM cell that receives ``x @ kernel + bias`` already computed (gate order i, f, c, o, as Keras)."""

    def __init__(self, units: int, activation: str = "tanh", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        self.recurrent_kernel = self.add_weight(shape=(self.units, 4 * self.units), initializer="orthogonal",
                                                name="recurrent_kernel")

    def call(self, inputs, states, training=False):
        h, c = states
        z = inputs + ops.matmul(h, self.recurrent_kernel)
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * self.activation(g)
        h = ops.sigmoid(o) * self.activation(c)
        return h, [h, c]


def _hoisted_lstm(x, units: int, name: str, return_sequences: bool = True, activation: str = "tanh",
                  repeat: bool = False):
    """``LSTM(units)(x)``, or with ``repeat`` ``LSTM(units)(RepeatVector(ROWS)(x))``, with the projection hoisted."""
    projection = keras.layers.Dense(4 * units, name=f"{name}_input_projection")(x)
    if repeat:
        projection = keras.layers.RepeatVector(ROWS)(projection)
    cell = ProjectedLSTMCell(units, activation)
    return keras.layers.RNN(cell, return_sequences=return_sequences, name=name)(projection)


def build_hoisted_report() -> keras.Model:
    """LSTM(512) -> LSTM(256) -> RepeatVector(32) -> LSTM(256) -> LSTM(96, sigmoid), hoisted."""
    inputs = keras.Input(shape=(ROWS, FEATURES))
    x = _hoisted_lstm(inputs, 512, "encoder_lstm_1")
    x = _hoisted_lstm(x, 256, "encoder_lstm_2", return_sequences=False)
    x = _hoisted_lstm(x, 256, "decoder_lstm_1", repeat=True)
    outputs = _hoisted_lstm(x, FEATURES, "output_lstm", activation="sigmoid")
    return keras.Model(inputs, outputs, name="hoisted_report")


def hoisted_copy(keras_model: keras.Model) -> keras.Model:
    """The hoisted report model with ``keras_model``'s weights (kernel and bias to each Dense, the
    recurrent kernel to each cell), so both start from the same point."""
    weights = []
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.LSTM):
            kernel, recurrent_kernel, bias = layer.get_weights()
            weights += [kernel, bias, recurrent_kernel]
    hoisted = build_hoisted_report()
    hoisted.set_weights(weights)
    return hoisted


if __name__ == "__main__":
    import numpy as np

    from lstm_ae.config import REPORT_MODEL
    from lstm_ae.model import build_autoencoder

    keras.utils.set_random_seed(0)
    reference = build_autoencoder(REPORT_MODEL)
    hoisted = hoisted_copy(reference)
    images = np.random.default_rng(0).random((256, ROWS, FEATURES), dtype=np.float32)
    difference = np.abs(reference.predict(images, verbose=0) - hoisted.predict(images, verbose=0)).max()
    print(f"parameters {reference.count_params()} and {hoisted.count_params()}; largest output difference {difference:.2e}")
