"""Architecture screen of 2026-11-29 (issue 4): validation MSE per epoch on a subset, for the
tuned one-way model (encoder LSTM(256), decoder LSTM(512), dense head) against bidirectional
encoders/decoders and a warm-up + cosine learning-rate schedule. Plain Keras, one variant per
process, 10,000 training / 2,000 validation images of the processed data, batch 128, seed 42.

Run in the project root after `dvc repro preprocess`, as it was run:

    for v in default bienc bienc_bidec cos bienc_bidec_cos; do
        PYTHONPATH=src python benchmarks/architecture_screen.py $v 4 10000; done

and the second screen, on the bidirectional model (then the default), the same day:

    for v in bienc_bidec bienc_bidec_pos bienc_bidec_b256 proj_bidec_pos bienc_bidec_pos_lr3 \
             bienc_bidec_pos_cos; do
        PYTHONPATH=src python benchmarks/architecture_screen.py $v 4 10000; done

Variants (names as run): default = the one-way tuned model at Adam 0.00177; bienc: the encoder
is Bidirectional(LSTM(128)) (code: 2 x 128 = 256 floats); bidec: the decoder is
Bidirectional(LSTM(256)); cos: warm-up over the first tenth of the steps from 0.0003 to 0.003,
then cosine decay to zero; pos: the decoder reads the one-hot row index beside the code
(model.row_index); b256: batch 256 at Adam 0.0025; proj: the encoder is Bidirectional(LSTM(256))
followed by a linear Dense(256) code; lr3: Adam 0.003. Results:
benchmarks/results/architecture-screen-2026-11-29.jsonl and ...-2026-11-29-row-index.jsonl.
"""
from __future__ import annotations

import json
import sys
import time

import keras
import numpy as np

from lstm_ae.dataset import load_dataset
from lstm_ae.paths import PROCESSED
from lstm_ae.sequences import scale

L = keras.layers


class RowPosition(L.Layer):
    """Appends a one-hot row index to every step: the same for every image, so it carries
    nothing around the code, but the decoder no longer has to count rows itself."""

    def call(self, x):
        eye = keras.ops.eye(32, dtype=x.dtype)[None]
        return keras.ops.concatenate([x, keras.ops.broadcast_to(eye, (keras.ops.shape(x)[0], 32, 32))], axis=-1)


def build(variant: str) -> keras.Model:
    inputs = keras.Input((32, 96))
    if "proj" in variant:  # wider encoder, then a linear Dense(256) code
        h = L.Dense(256)(L.Bidirectional(L.LSTM(256))(inputs))
    elif "bienc" in variant:
        h = L.Bidirectional(L.LSTM(128), merge_mode="concat")(inputs)
    else:
        h = L.LSTM(256)(inputs)
    h = L.RepeatVector(32)(h)
    if "pos" in variant:
        h = RowPosition()(h)
    if "bidec" in variant:
        h = L.Bidirectional(L.LSTM(256, return_sequences=True))(h)
    else:
        h = L.LSTM(512, return_sequences=True)(h)
    return keras.Model(inputs, L.TimeDistributed(L.Dense(96, activation="sigmoid"))(h))


def batch_size(variant: str) -> int:
    return 256 if "b256" in variant else 128


def learning_rate(variant: str, steps: int):
    if "cos" not in variant:
        return 0.003 if "lr3" in variant else 0.0025 if "b256" in variant else 0.00177
    peak = 0.003
    return keras.optimizers.schedules.CosineDecay(
        peak / 10, decay_steps=steps - steps // 10, warmup_target=peak, warmup_steps=steps // 10
    )


class Timer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(round(time.perf_counter() - self.started, 1))


def main() -> None:
    variant, epochs, train_images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = load_dataset(PROCESSED)
    x, x_val = scale(data.x_train[:train_images]), scale(data.x_val[:2000])
    keras.utils.set_random_seed(42)
    model = build(variant)
    steps = int(np.ceil(train_images / batch_size(variant))) * epochs
    model.compile(keras.optimizers.Adam(learning_rate(variant, steps)), "mse")
    timer = Timer()
    history = model.fit(x, x, validation_data=(x_val, x_val), batch_size=batch_size(variant), epochs=epochs, verbose=0, callbacks=[timer])
    print(json.dumps({"v": variant, "params": model.count_params(), "times": timer.times,
                      "val": [round(v, 5) for v in history.history["val_loss"]]}))


if __name__ == "__main__":
    main()
