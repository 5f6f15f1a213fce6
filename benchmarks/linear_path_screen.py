"""Goal-1 screen (issue 4): can an LSTM beat PCA at 256 floats if it only has to add to PCA?

The hybrid keeps the code as the only path from input to output, but gives the encoder and the
decoder a linear path each, initialised from PCA fitted on the training images (whitened, so
each code float has unit variance): code = PCA scores + Dense(encoder LSTM state), output =
PCA reconstruction + TimeDistributed Dense(decoder LSTM output). The Dense layers that add the
LSTMs start at zero, so training starts exactly at PCA (plus float rounding) and can only be
driven by what the LSTMs add. Variants, each in its own process on the same subset:

  default      model.* of params.yaml, as `dvc repro` trains it
  hybrid_pca   the hybrid above, linear paths initialised from PCA
  hybrid_rand  the same hybrid with the linear paths randomly initialised
  hybrid_frozen  hybrid_pca with the linear paths frozen at PCA: only the LSTMs (and the
               Dense layers that add them) train, so the rate cannot push PCA's part away

Run in the project root after `dvc repro preprocess`, as on 2026-11-30 (results in
benchmarks/results/linear-path-screen-2026-11-30.jsonl):

    for v in "hybrid_pca --lr 0.001" "default --lr 0.003" "hybrid_pca --lr 0.0003" "hybrid_rand --lr 0.003"; do
        python benchmarks/linear_path_screen.py $v --epochs 4; done
    for lr in 0.001 0.003; do python benchmarks/linear_path_screen.py hybrid_frozen --lr $lr --epochs 4; done

Appends one JSON line per variant to benchmarks/out/linear-path-screen.jsonl (validation MSE per
epoch, and clipped to [0, 1] at the end) beside the PCA validation MSE on the same images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scratch import record


def hybrid(model_cfg, pca):
    """The default's LSTMs plus a linear path in the encoder and in the decoder; ``pca``: a fitted
    sklearn PCA to initialise the linear paths from, or None for a random initialisation."""
    import keras

    from lstm_ae.model import RowIndex, _lstm
    from lstm_ae.sequences import FEATURES, ROWS

    latent = model_cfg.latent_size
    inputs = keras.Input((ROWS, FEATURES))
    x = inputs
    for i, width in enumerate(model_cfg.encoder_widths):
        x = _lstm(width, i < len(model_cfg.encoder_widths) - 1, f"encoder_lstm_{i + 1}", model_cfg.bidirectional, "float32")(x)
    linear_code = keras.layers.Dense(latent, name="linear_encoder")(keras.layers.Flatten()(inputs))
    lstm_code = keras.layers.Dense(latent, kernel_initializer="zeros", use_bias=False)(x)
    code = keras.layers.Add(name="code")([linear_code, lstm_code])
    y = keras.layers.RepeatVector(ROWS)(code)
    if model_cfg.row_index:
        y = RowIndex()(y)
    for i, width in enumerate(model_cfg.decoder_widths):
        y = _lstm(width, True, f"decoder_lstm_{i + 1}", model_cfg.bidirectional, "float32")(y)
    lstm_part = keras.layers.TimeDistributed(keras.layers.Dense(FEATURES, kernel_initializer="zeros"))(y)
    linear_part = keras.layers.Reshape((ROWS, FEATURES))(keras.layers.Dense(ROWS * FEATURES, name="linear_decoder")(code))
    model = keras.Model(inputs, keras.layers.Add()([linear_part, lstm_part]))
    if pca is not None:
        scale = np.sqrt(pca.explained_variance_).astype(np.float32)
        components, mean = pca.components_.astype(np.float32), pca.mean_.astype(np.float32)
        encoder = components.T / scale
        model.get_layer("linear_encoder").set_weights([encoder, -mean @ encoder])
        model.get_layer("linear_decoder").set_weights([components * scale[:, None], mean])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=("default", "hybrid_pca", "hybrid_rand", "hybrid_frozen"))
    parser.add_argument("--lr", type=float, default=0.003, help="train.learning_rate (the schedule is params.yaml's)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--val-images", type=int, default=2000)
    args = parser.parse_args()

    import keras
    from sklearn.decomposition import PCA

    from lstm_ae.config import load_config, override
    from lstm_ae.dataset import load_dataset
    from lstm_ae.metrics import mse_per_image
    from lstm_ae.model import build_autoencoder
    from lstm_ae.paths import PROCESSED
    from lstm_ae.sequences import scale
    from lstm_ae.training import fit

    cfg = override(load_config(Path("params.yaml")), "train", {"learning_rate": args.lr, "max_epochs": args.epochs})
    data = load_dataset(PROCESSED)
    x_train, x_val = scale(data.x_train[: args.train_images]), scale(data.x_val[: args.val_images])
    flat_val = x_val.reshape(len(x_val), -1)
    pca = PCA(cfg.model.latent_size, svd_solver="randomized", random_state=0).fit(x_train.reshape(len(x_train), -1))
    pca_mse = float(mse_per_image(flat_val, np.clip(pca.inverse_transform(pca.transform(flat_val)), 0, 1)).mean())
    keras.utils.set_random_seed(cfg.seed)
    if args.variant == "default":
        model = build_autoencoder(cfg.model)
    else:
        model = hybrid(cfg.model, None if args.variant == "hybrid_rand" else pca)
        if args.variant == "hybrid_frozen":
            for name in ("linear_encoder", "linear_decoder"):
                model.get_layer(name).trainable = False
    started = time.perf_counter()
    history = fit(model, x_train, x_val, cfg.train, verbose=2)
    clipped = np.clip(model.predict(x_val, batch_size=256, verbose=0), 0, 1)
    row = {"variant": args.variant, "learning_rate": args.lr, "epochs": args.epochs, "train_images": len(x_train),
           "val_images": len(x_val), "pca_val_mse": round(pca_mse, 6), "val_mse": [round(v, 6) for v in history["val_loss"]],
           "clipped_val_mse": round(float(mse_per_image(x_val, clipped).mean()), 6),
           "seconds": round(time.perf_counter() - started, 1), "params": model.count_params()}
    record("linear-path-screen", row)


if __name__ == "__main__":
    main()
