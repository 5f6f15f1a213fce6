"""The autoencoder's architecture: the report's size, both heads, and a latent vector as the only path."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from lstm_ae.config import ModelConfig
from lstm_ae.model.autoencoder import build_autoencoder

Widths = tuple[int, ...]


def config(encoder: Widths = (8, 4), decoder: Widths = (4,), head: str = "lstm") -> ModelConfig:
    """The report's kind of model: one-way LSTMs, no row index (the settings' defaults are the other)."""
    return ModelConfig(
        encoder_widths=encoder, decoder_widths=decoder, head=head, bidirectional=False, row_index=False
    )


def lstms(model: keras.Model) -> list[keras.layers.LSTM]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]


def test_report_architecture_size_and_output_range() -> None:
    model = build_autoencoder(config((512, 256), (256,), "lstm"))
    assert model.count_params() == 2_695_552
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 96)).astype(np.float32)
    y = keras.ops.convert_to_numpy(model(x))
    assert y.shape == (2, 32, 96)
    assert np.all((y > 0) & (y < 1))


def test_dense_head_ends_in_time_distributed_dense_and_keeps_lstms_cudnn_eligible() -> None:
    model = build_autoencoder(config(head="dense"))
    head = model.layers[-1]
    assert isinstance(head, keras.layers.TimeDistributed)
    assert isinstance(head.layer, keras.layers.Dense) and head.layer.units == 96
    assert head.layer.activation is keras.activations.sigmoid
    assert model.output_shape == (None, 32, 96)
    # Keras' cuDNN conditions: tanh, sigmoid gates, a bias, not unrolled.
    for layer in lstms(model):
        assert layer.activation is keras.activations.tanh, layer.name
        assert layer.recurrent_activation is keras.activations.sigmoid
        assert layer.use_bias and not layer.unroll


def test_lstm_head_is_the_reports_sigmoid_lstm() -> None:
    head = build_autoencoder(config(head="lstm")).layers[-1]
    assert isinstance(head, keras.layers.LSTM) and head.units == 96
    assert head.activation is keras.activations.sigmoid and head.return_sequences


@pytest.mark.parametrize("head", ["lstm", "dense"])
def test_only_the_latent_vector_reaches_the_decoder(head: str) -> None:
    model = build_autoencoder(config((8, 4), (6,), head))
    repeat = model.get_layer("repeat_latent")
    assert tuple(repeat.input.shape) == (None, 4)
    assert repeat.input is model.get_layer("encoder_lstm_2").output
    assert model.get_layer("decoder_lstm_1").input is repeat.output
    # A plain chain: every layer after the input has exactly one input tensor (no skip connection).
    for layer in model.layers[1:]:
        assert isinstance(layer.input, keras.KerasTensor), layer.name


@pytest.mark.parametrize(
    ("encoder", "decoder", "head", "names"),
    [
        ((8, 4), (4,), "lstm", ["encoder_lstm_1", "encoder_lstm_2", "decoder_lstm_1", "output_lstm"]),
        ((4,), (4, 8), "dense", ["encoder_lstm_1", "decoder_lstm_1", "decoder_lstm_2", "output_dense"]),
    ],
)
def test_layers_follow_the_widths(encoder: Widths, decoder: Widths, head: str, names: list[str]) -> None:
    model = build_autoencoder(config(encoder, decoder, head))
    # Input and RepeatVector, plus one layer per width and the head.
    assert len(model.layers) == len(encoder) + len(decoder) + 3
    assert [layer.name for layer in model.layers if layer.name not in ("rows", "repeat_latent")] == names
    assert [layer.units for layer in lstms(model)][: len(encoder) + len(decoder)] == [*encoder, *decoder]
    # Only the last encoder LSTM collapses the sequence into the latent vector.
    encoders = lstms(model)[: len(encoder)]
    assert [layer.return_sequences for layer in encoders] == [True] * (len(encoder) - 1) + [False]


def test_bidirectional_halves_each_width_per_direction_and_keeps_the_latent_size() -> None:
    model = build_autoencoder(
        ModelConfig(
            encoder_widths=(8, 4), decoder_widths=(6,), head="dense", bidirectional=True, row_index=False
        )
    )
    wrappers = [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert [w.name for w in wrappers] == ["encoder_lstm_1", "encoder_lstm_2", "decoder_lstm_1"]
    assert [w.forward_layer.units for w in wrappers] == [4, 2, 3]
    assert all(w.backward_layer.go_backwards and w.merge_mode == "concat" for w in wrappers)
    # The code is both directions' final states, 2 + 2 = the configured 4 floats, and the only path.
    repeat = model.get_layer("repeat_latent")
    assert tuple(repeat.input.shape) == (None, 4)
    assert repeat.input is model.get_layer("encoder_lstm_2").output
    for layer in model.layers[1:]:
        assert isinstance(layer.input, keras.KerasTensor), layer.name
    assert model.output_shape == (None, 32, 96)


def test_bidirectional_lstms_stay_cudnn_eligible() -> None:
    model = build_autoencoder(
        ModelConfig(encoder_widths=(8,), decoder_widths=(8,), head="dense", bidirectional=True)
    )
    inner = [
        d
        for w in model.layers
        if isinstance(w, keras.layers.Bidirectional)
        for d in (w.forward_layer, w.backward_layer)
    ]
    assert len(inner) == 4
    for layer in inner:
        assert (
            layer.activation is keras.activations.tanh
            and layer.recurrent_activation is keras.activations.sigmoid
        )
        assert layer.use_bias and not layer.unroll


def test_row_index_gives_the_decoder_each_rows_index_and_nothing_from_the_image() -> None:
    model = build_autoencoder(
        ModelConfig(
            encoder_widths=(4,), decoder_widths=(6,), head="dense", bidirectional=False, row_index=True
        )
    )
    repeat, rows = model.get_layer("repeat_latent"), model.get_layer("row_index")
    assert rows.input is repeat.output and model.get_layer("decoder_lstm_1").input is rows.output
    assert tuple(rows.output.shape) == (None, 32, 4 + 32)
    # The code is still the only path: the appended features are the identity, whatever the image.
    upto = keras.Model(model.input, rows.output)
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 96)).astype(np.float32)
    out = keras.ops.convert_to_numpy(upto(images))
    assert np.array_equal(out[0, :, 4:], np.eye(32)) and np.array_equal(out[1, :, 4:], np.eye(32))
    for layer in model.layers[1:]:
        assert isinstance(layer.input, keras.KerasTensor), layer.name


def test_a_saved_row_index_model_loads_in_safe_mode_in_a_fresh_process(tmp_path) -> None:
    # The layer is the package's own: the evaluate stage (a new process) must find it by name.
    model = build_autoencoder(
        ModelConfig(
            encoder_widths=(4,), decoder_widths=(4,), head="dense", bidirectional=True, row_index=True
        )
    )
    path = tmp_path / "model.keras"
    model.save(path)
    images = np.random.default_rng(1).uniform(0, 1, (3, 32, 96)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    script = (
        "import sys, numpy as np; from lstm_ae.model.saved import load_model; "
        "m = load_model(__import__('pathlib').Path(sys.argv[1])); "
        "np.save(sys.argv[3], np.asarray(m(np.load(sys.argv[2]))))"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "images.npy"), str(tmp_path / "out.npy")],
        check=True,
        capture_output=True,
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), keras.ops.convert_to_numpy(model(images)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("head", ["lstm", "dense"])
def test_mixed_bfloat16_computes_in_bfloat16_keeps_float32_weights_and_output(head: str, tmp_path) -> None:
    cfg = ModelConfig(
        encoder_widths=(8, 4),
        decoder_widths=(6,),
        head=head,
        bidirectional=True,
        row_index=True,
        precision="mixed_bfloat16",
    )
    model = build_autoencoder(cfg)
    plain = build_autoencoder(cfg.model_copy(update={"precision": "float32"}))
    assert model.count_params() == plain.count_params()  # the same model, only the arithmetic differs
    assert all(w.dtype == "float32" for w in model.weights)
    inner = model.layers[1:-1]  # all but the input and the float32 cast
    assert inner and all(layer.dtype_policy.name == "mixed_bfloat16" for layer in inner)
    assert all(layer.compute_dtype == "bfloat16" for layer in lstms(model))
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 96)).astype(np.float32)
    out = model(images)
    assert keras.backend.standardize_dtype(out.dtype) == "float32" and model.output_shape == (None, 32, 96)
    # Saved and loaded, it keeps its policy and gives the same output (what evaluate and serve load).
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.get_layer("decoder_lstm_1").dtype_policy.name == "mixed_bfloat16"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), keras.ops.convert_to_numpy(out))
