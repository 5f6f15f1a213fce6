"""Training throughput of the report's model: its plain script against our train path and
compiler/batch options, each in a fresh process on the same images. Issue 4, goals 3 and 4.

Run in the project root after `dvc repro preprocess` (the full data set), e.g.

    python benchmarks/throughput.py --train-images 6000 --val-images 1500 --epochs 3

Variants (the report's architecture: LSTM(512) -> LSTM(256) -> RepeatVector -> LSTM(256) ->
LSTM(96, sigmoid), Adam 1e-4, MSE):
  report        model.fit on float32 arrays, batch 128: the report's own script
  ours          lstm_ae.training.fit with the train stage's callbacks (early stopping,
                TerminateOnNaN, per-epoch MLflow logging into a throw-away SQLite store)
  report_xla    as report, compiled with jit_compile=True (XLA)
  report_xla_b256  as report_xla with batch 256 (fewer, larger steps: optimisation changes too)

Each variant trains --epochs epochs; the first includes tracing and compilation and is
reported apart. Samples per second = training images / median wall time of the later epochs
(each epoch includes its validation pass; the median, as single epochs here sometimes take
1.6x longer for no reason the run can see). Prints one JSON line per variant and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("report", "ours", "report_xla", "report_xla_b256")


def measure(variant: str, train_images: int, val_images: int, epochs: int) -> dict:
    """Runs in its own process: import, load, build, fit, time each epoch."""
    import keras
    import numpy as np

    from lstm_ae.config import ModelConfig, TrainConfig
    from lstm_ae.dataset import load_dataset
    from lstm_ae.model import build_autoencoder
    from lstm_ae.paths import PROCESSED
    from lstm_ae.sequences import scale

    data = load_dataset(PROCESSED)
    x_train, x_val = scale(data.x_train[:train_images]), scale(data.x_val[:val_images])
    keras.utils.set_random_seed(42)
    model = build_autoencoder(ModelConfig(encoder_widths=(512, 256), decoder_widths=(256,), head="lstm"))
    batch = 256 if variant.endswith("b256") else 128
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)

    if variant == "ours":
        import mlflow

        from lstm_ae import tracking, training

        store = tempfile.mkdtemp()
        mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
        cfg = TrainConfig(learning_rate=1e-4, batch_size=batch, max_epochs=epochs, patience=10)
        with mlflow.start_run():
            history = training.fit(model, x_train, x_val, cfg, callbacks=[Clock(), tracking.EpochLogger()], verbose=2)
        val_loss = history["val_loss"][-1]
    else:
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse", jit_compile=variant.startswith("report_xla"))
        history = model.fit(x_train, x_train, validation_data=(x_val, x_val), batch_size=batch, epochs=epochs,
                            callbacks=[Clock()], verbose=0)
        val_loss = history.history["val_loss"][-1]
    steady = float(np.median(times[1:])) if len(times) > 1 else float("nan")
    return {
        "variant": variant, "batch_size": batch, "train_images": len(x_train), "val_images": len(x_val),
        "epoch_seconds": [round(t, 2) for t in times], "first_epoch_s": round(times[0], 2),
        "steady_epoch_s": round(steady, 2), "samples_per_s": round(len(x_train) / steady, 1),
        "val_loss_last": val_loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--train-images", type=int, default=6000)
    parser.add_argument("--val-images", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one variant here
    args = parser.parse_args()
    if args.one:
        result = measure(args.one, args.train_images, args.val_images, args.epochs)
        print("RESULT " + json.dumps(result), flush=True)
        return
    rows = []
    for variant in args.variants:
        out = subprocess.run(
            [sys.executable, __file__, "--one", variant, "--train-images", str(args.train_images),
             "--val-images", str(args.val_images), "--epochs", str(args.epochs)],
            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            sys.exit(f"{variant} failed ({out.returncode}):\n{out.stderr[-3000:]}")
        rows.append(json.loads(lines[0].removeprefix("RESULT ")))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r["variant"] == "report"), rows[0])
    print("\n| variant | batch | first epoch | later epochs (median) | samples/s | vs report |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['batch_size']} | {row['first_epoch_s']} s | {row['steady_epoch_s']} s | "
              f"{row['samples_per_s']} | {row['samples_per_s'] / base['samples_per_s']:.2f}x |")
    out_dir = Path("benchmarks/out")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
