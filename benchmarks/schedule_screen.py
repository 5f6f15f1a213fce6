"""Learning-rate schedule screen (issue 4, goal 2): validation MSE per epoch of the default model
(model.* of params.yaml) under one schedule and peak rate, trained with lstm_ae.training.fit on
a subset of the processed data. One variant per process, so each starts from the same seeds.

Run in the project root after `dvc repro preprocess`, as it was run on 2026-11-29:

    for v in constant:0.00177 cooldown:0.00177 cosine:0.00177 cooldown:0.003; do  # results/schedule-screen-2026-11-29.jsonl
        python benchmarks/schedule_screen.py $v --epochs 6 --train-images 10000; done

A variant is SCHEDULE:LEARNING_RATE (train.schedule, train.learning_rate). Appends one JSON line
per variant to benchmarks/out/schedule-screen.jsonl and prints it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scratch import record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", help="SCHEDULE:LEARNING_RATE, e.g. cooldown:0.00177")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--val-images", type=int, default=2000)
    args = parser.parse_args()
    schedule, _, rate = args.variant.partition(":")

    import keras

    from lstm_ae.config import ConfigError, load_config, override
    from lstm_ae.dataset import load_dataset
    from lstm_ae.model import build_autoencoder
    from lstm_ae.paths import PROCESSED
    from lstm_ae.sequences import scale
    from lstm_ae.training import fit

    try:  # validated like params.yaml: a bad SCHEDULE or rate stops here with the key's name
        cfg = override(load_config(Path("params.yaml")), "train", {"schedule": schedule, "learning_rate": rate, "max_epochs": args.epochs})
    except ConfigError as exc:
        parser.error(f"{args.variant}: {exc}")
    train_cfg = cfg.train
    data = load_dataset(PROCESSED)
    x_train, x_val = scale(data.x_train[: args.train_images]), scale(data.x_val[: args.val_images])
    keras.utils.set_random_seed(cfg.seed)
    started = time.perf_counter()
    history = fit(build_autoencoder(cfg.model), x_train, x_val, train_cfg, verbose=0)
    row = {"variant": args.variant, "model": cfg.model.model_dump(mode="json"), "train": train_cfg.model_dump(mode="json"),
           "train_images": len(x_train), "val_images": len(x_val), "seconds": round(time.perf_counter() - started, 1),
           "val_mse": [round(v, 6) for v in history["val_loss"]]}
    record("schedule-screen", row)


if __name__ == "__main__":
    main()
