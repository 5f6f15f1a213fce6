"""Pure model definition: the sweep autoencoder, a linear code of 256 floats decoded by LSTM sweeps.

The report's autoencoder squeezes each image through an LSTM encoder and decodes it with LSTMs
that emit one row at a time; at a 256-float code it loses to PCA, the best *linear* code of that
size. This family starts where PCA ends. The encoder is one linear map from the 3,072 pixels to
the code, and the decoder's first layer is the linear map back to an image; both start at PCA's
projection and reconstruction, so the untrained model already is PCA-256. LSTM sweeps then do
what PCA cannot: bidirectional LSTMs run along every row and every column of that first image
(in blocks of ``patch`` x ``patch`` pixels) and write a per-pixel correction, as the restorer
does for a blurred photo (:mod:`lstm_ae.model.restorer`). The last projection starts at zero,
so training starts from PCA and only improves on it.

The code is the only path: the decoder's sole input is the code layer's output, and every layer
after it reads only what the code layer's output produced (``decoder`` builds the decoder alone).

The linear maps train at ``linear_rate`` times the optimiser's rate: they start at an optimum,
and Adam's full-rate steps (about the learning rate per weight, for weights near 1/sqrt(3072))
throw them far from it in the first hundred steps. :class:`ScaledDense` stores its weights
divided by the factor, which scales Adam's steps on the weights it uses by the factor.
"""

from __future__ import annotations

import keras
import numpy as np
from sklearn.decomposition import PCA

from lstm_ae.config import SweepConfig
from lstm_ae.data.sequences import FEATURES, ROWS
from lstm_ae.errors import UserError
from lstm_ae.model.restorer import CHANNELS, ClipWhenPredicting, sweep_stack

PIXELS = ROWS * FEATURES  # 3,072 values per image
SIDE = ROWS  # 32 x 32 pixels


class CodeSizeError(UserError, ValueError):
    """Fewer training images than floats in the code: PCA cannot start the linear maps."""


@keras.saving.register_keras_serializable(package="lstm_ae")
class ScaledDense(keras.layers.Layer):
    """A Dense layer whose weights train at ``rate`` times the optimiser's learning rate.

    It stores ``kernel / rate`` and ``bias / rate`` and multiplies them back in ``call``: the
    output is that of a plain Dense layer, but Adam, whose steps are about its learning rate
    whatever the gradient's size, moves the weights used by ``rate`` times as much.
    ``set_linear`` sets the weights in use (it divides them itself).
    """

    def __init__(self, units: int, rate: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units, self.rate = units, rate

    def build(self, input_shape) -> None:
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="kernel"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel * self.rate) + self.bias * self.rate

    def set_linear(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Make the layer compute ``x @ kernel + bias``."""
        self.kernel.assign(np.asarray(kernel, dtype="float32") / self.rate)
        self.bias.assign(np.asarray(bias, dtype="float32") / self.rate)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "rate": self.rate}


@keras.saving.register_keras_serializable(package="lstm_ae")
class ToPatches(keras.layers.Layer):
    """(batch, 3072) image -> (batch, 32/p, 32/p, p*p*3): each block of p x p pixels one position."""

    def __init__(self, patch: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.patch = patch

    def call(self, x):
        n, p = SIDE // self.patch, self.patch
        x = keras.ops.reshape(x, (-1, n, p, n, p, CHANNELS))
        return keras.ops.reshape(keras.ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, n, n, p * p * CHANNELS))

    def compute_output_shape(self, input_shape):
        n = SIDE // self.patch
        return (input_shape[0], n, n, self.patch * self.patch * CHANNELS)

    def get_config(self) -> dict:
        return {**super().get_config(), "patch": self.patch}


@keras.saving.register_keras_serializable(package="lstm_ae")
class PatchesToRows(ToPatches):
    """The inverse of :class:`ToPatches`, straight to the (batch, 32, 96) row layout."""

    def call(self, x):
        n, p = SIDE // self.patch, self.patch
        x = keras.ops.reshape(x, (-1, n, n, p, p, CHANNELS))
        return keras.ops.reshape(keras.ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, ROWS, FEATURES))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], ROWS, FEATURES)


def _linear(units: int, rate: float, name: str) -> ScaledDense:
    """A linear map training at ``rate``; at 0, frozen (the ablation fixed at PCA)."""
    return ScaledDense(units, rate or 1.0, trainable=rate > 0, name=name)


def build_decoder(cfg: SweepConfig) -> keras.Model:
    """Code (batch, code_size) -> rows (batch, 32, 96): the linear image, then the sweeps' correction."""
    code = keras.Input(shape=(cfg.code_size,), name="code")
    linear = _linear(PIXELS, cfg.linear_rate, "linear_decoder")(code)
    patches = ToPatches(cfg.patch, name="patches")(linear)
    x = keras.layers.Dense(cfg.features, activation="tanh", name="project_in")(patches)
    x = sweep_stack(x, cfg.units, cfg.blocks, cfg.sweeps)
    correction = keras.layers.Dense(
        cfg.patch * cfg.patch * CHANNELS, kernel_initializer="zeros", name="correction"
    )(x)
    refined = keras.layers.Add(name="refined")([patches, correction])
    rows = PatchesToRows(cfg.patch, name="rows_out")(refined)
    return keras.Model(code, ClipWhenPredicting(name="clip")(rows), name="decoder")


def build_sweep_autoencoder(cfg: SweepConfig) -> keras.Model:
    """Rows (batch, 32, 96) -> ``ScaledDense`` code (layer ``code``) -> :func:`build_decoder`.

    The weights start random; :func:`start_at_pca` puts the linear maps at PCA before training.
    """
    rows = keras.Input(shape=(ROWS, FEATURES), name="rows")
    flat = keras.layers.Flatten(name="pixels")(rows)
    code = _linear(cfg.code_size, cfg.linear_rate, "code")(flat)
    outputs = build_decoder(cfg)(code)
    return keras.Model(rows, outputs, name="sweep_autoencoder")


def encoder(model: keras.Model) -> keras.Model:
    """Rows -> the 256-float code, sharing ``model``'s weights."""
    return keras.Model(model.inputs, model.get_layer("code").output, name="encoder")


def start_at_pca(model: keras.Model, x_train: np.ndarray, seed: int = 0) -> keras.Model:
    """Set the encoder and the linear decoder to PCA fitted on ``x_train`` (N, 32, 96).

    Code = (x - mean) @ components.T, image = code @ components + mean: the model's first output
    is PCA's reconstruction (before the clip), and the sweeps' zero-initialised correction leaves
    it so. The randomized solver fits 40,000 images in seconds.
    """
    layer = model.get_layer("code")
    if len(x_train) < layer.units:
        raise CodeSizeError(
            f"model.sweep.code_size is {layer.units}, but PCA needs at least as many training images and "
            f"there are {len(x_train)}; lower model.sweep.code_size or train on more images"
        )
    flat = np.asarray(x_train, dtype="float32").reshape(len(x_train), -1)
    pca = PCA(n_components=layer.units, svd_solver="randomized", random_state=seed).fit(flat)
    components, mean = pca.components_.astype("float32"), pca.mean_.astype("float32")
    layer.set_linear(components.T, -mean @ components.T)
    model.get_layer("decoder").get_layer("linear_decoder").set_linear(components, mean)
    return model
