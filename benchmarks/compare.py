"""How low a test MSE does each recipe reach in its training time? (docs/results.md: Headline table,
The sweep autoencoder against PCA)

The report's recipe, the default recipe (params.yaml) and PCA at the same code size, on the same
images, in one go. Its runs are behind docs/results.md's headline table (and the README's Results
table), How the default was chosen, Longer budgets, and the bfloat16 run of the default recipe
under Throughput of the report's model; each names its command and result file there.

Run in the project root after `dvc repro preprocess` (the full data set), e.g.

    python benchmarks/compare.py --minutes 30                 # every contender, 30 min of training each
    python benchmarks/compare.py --minutes 30 --max-epochs 200  # ... each using all 30 min of it
    python benchmarks/compare.py --minutes 2 --train-images 2000 --val-images 500 --test-images 500

Contenders:
  report   the report's model and recipe: LSTM(512) -> LSTM(256) -> RepeatVector -> LSTM(256) ->
           LSTM(96, sigmoid), Adam 1e-4, batch 128, early stopping with patience 10
  default  model.* and train.* of params.yaml, through lstm_ae.model.fit.fit (what `dvc repro` trains):
           since 2026-12-05 the sweep autoencoder (model.family sweep_ae), 12 epochs at batch 32,
           Adam 0.006. Before it, the LSTM autoencoder that is now the `autoencoder` preset:
           since 2026-11-29 the best trial of the tuning study (docs/tuning.md) made bidirectional,
           encoder LSTM(256) (2 x 128), decoder LSTM(512) (2 x 256), dense head, Adam 0.00177,
           and (later that day) with the one-hot row index beside the code (model.row_index),
           then (that evening) at Adam 0.003 with a cooldown over the last fifth of 8 epochs,
           and since 2026-11-30 08:00 UTC at batch 64 (before: 128).
           Earlier defaults: the report's architecture at Adam 1e-3 (`default` in the run of
           2026-11-28 in benchmarks/results), then the same tuned trial one-way (`tuned` there)
  pca      PCA with as many components as the default's latent size, fitted on the training images

An LSTM contender may change keys of its model and train sections, with the same checks as
params.yaml: `default:train.schedule=cooldown`, `report:train.learning_rate=0.001:train.max_epochs=9`,
`default:model.sweep.linear_rate=0` (values are YAML; a dotted key changes one key of a nested
section). The table names each contender by that spec.

Each LSTM contender trains in a fresh process until its own max_epochs, early stopping, or
--minutes of training wall time, whichever comes first (the budget is checked at epoch ends).
After every epoch the clock stops and the test images are scored, so "time to MSE 0.0051" is
training time only, measured on test MSE. Samples per second are training images over the
median epoch time (the first epoch includes tracing). Training CPU time is the process's user
plus system time over the same epochs (all threads): on a shared machine wall time for the same
work swings several-fold, CPU time shows the work. Peak memory is the process's maximum RSS.

Writes benchmarks/out/compare-<time>.json, a figure of every contender's test MSE against training
time beside it (.png; `--plot FILE.json` draws it again) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from lstm_ae import atomic
from lstm_ae.config import ConfigError

CONTENDERS = ("report", "default", "pca")
REPORT_MSE = 0.0051  # the report's test MSE: how soon each contender reaches it is a column of the table


def contender(spec: str) -> tuple[str, dict[str, dict]]:
    """``NAME[:SECTION.KEY=VALUE...]`` -> (NAME, {section: {key: value}}); ArgumentTypeError if malformed.

    A KEY may itself be dotted (``model.sweep.linear_rate=0``): it changes one key of a nested section.
    """
    import yaml

    name, *settings = spec.split(":")
    if name not in CONTENDERS:
        raise argparse.ArgumentTypeError(f"{name!r} is not a contender; choose from {', '.join(CONTENDERS)}")
    changes: dict[str, dict] = {}
    for item in settings:
        key, equals, value = item.partition("=")
        section, dot, leaf = key.partition(".")
        if name == "pca" or not equals or not dot or section not in ("model", "train"):
            raise argparse.ArgumentTypeError(
                f"{item!r} in {spec!r}: expected model.KEY=VALUE or train.KEY=VALUE after an LSTM contender"
            )
        changes.setdefault(section, {})[leaf] = yaml.safe_load(value)
    return name, changes


def configs(spec: str, max_epochs: int | None):
    """params.yaml with the model and train sections of an LSTM contender spec, validated like it
    (dotted keys set as `-S` sets them: config.set_values)."""
    from lstm_ae.config import load_config

    name, changes = contender(spec)
    values = {} if max_epochs is None else {"train.max_epochs": max_epochs}
    # The spec's own keys win over --max-epochs.
    values |= {f"{section}.{key}": value for section, keys in changes.items() for key, value in keys.items()}
    return load_config(Path("params.yaml"), preset="report" if name == "report" else None, values=values)


def _data(train_images: int, val_images: int, test_images: int):
    from lstm_ae.data.dataset import load_dataset
    from lstm_ae.data.sequences import scale
    from lstm_ae.paths import PROCESSED

    data = load_dataset(PROCESSED)
    return (
        scale(data.x_train[:train_images]),
        scale(data.x_val[:val_images]),
        scale(data.x_test[:test_images]),
    )


def _scores(clean, recon) -> dict:
    from lstm_ae import metrics
    from lstm_ae.data.sequences import to_images

    mse = metrics.mse_per_image(clean, recon)
    return {
        "test_mse": float(mse.mean()),
        "test_psnr": float(metrics.psnr_from_mse(mse, 1.0).mean()),
        "test_ssim": float(metrics.ssim_per_image(to_images(clean), to_images(recon)).mean()),
    }


def _peak_rss_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # KiB on Linux


def measure_lstm(name: str, args: argparse.Namespace) -> dict:
    """Runs in its own process: train the contender under the time budget, scoring every epoch."""
    import keras
    import numpy as np

    from lstm_ae.model.build import build_model
    from lstm_ae.model.fit import fit

    cfg = configs(name, args.max_epochs)
    model_cfg, train_cfg = cfg.model, cfg.train
    x_train, x_val, x_test = _data(args.train_images, args.val_images, args.test_images)
    keras.utils.set_random_seed(cfg.seed)
    started = time.perf_counter()
    model = build_model(model_cfg, x_train, cfg.seed)  # the sweep autoencoder fits PCA here
    setup_s = time.perf_counter() - started  # counted as training time, before the first epoch
    budget_s = args.minutes * 60
    epochs: list[dict] = []

    class Clock(keras.callbacks.Callback):
        """Times each epoch's training, then scores the test images with the clock stopped."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started, self.cpu_started = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            seconds, cpu_seconds = time.perf_counter() - self.started, time.process_time() - self.cpu_started
            recon = self.model.predict(x_test, batch_size=512, verbose=0)
            test_mse = float(np.mean((recon - x_test) ** 2))
            trained = setup_s + sum(e["seconds"] for e in epochs) + seconds
            epochs.append(
                {
                    "epoch": epoch + 1,
                    "seconds": round(seconds, 2),
                    "cpu_s": round(cpu_seconds, 2),
                    "trained_s": round(trained, 1),
                    "val_mse": float(logs["val_loss"]),
                    "test_mse": test_mse,
                }
            )
            print(
                f"{name} epoch {epoch + 1}: {seconds:.0f} s, val {logs['val_loss']:.5f}, test {test_mse:.5f}",
                file=sys.stderr,
                flush=True,
            )
            if trained >= budget_s:
                self.model.stop_training = True

    fit(model, x_train, x_val, train_cfg, callbacks=[Clock()], verbose=0)
    recon = model.predict(x_test, batch_size=512, verbose=0)  # early stopping restored the best epoch
    reached = next((e["trained_s"] for e in epochs if e["test_mse"] <= REPORT_MSE), None)
    steady = float(np.median([e["seconds"] for e in epochs[1:]] or [epochs[0]["seconds"]]))
    return {
        "contender": name,
        "model": model_cfg.model_dump(mode="json"),
        "train": train_cfg.model_dump(mode="json"),
        "param_count": model.count_params(),
        **_scores(x_test, recon),
        "setup_s": round(setup_s, 1),
        "train_wall_s": round(setup_s + sum(e["seconds"] for e in epochs), 1),
        "train_cpu_s": round(sum(e["cpu_s"] for e in epochs), 1),
        "epochs": epochs,
        "s_to_report_mse": reached,
        "samples_per_s": round(len(x_train) / steady, 1),
        "peak_rss_gib": _peak_rss_gib(),
    }


def measure_pca(args: argparse.Namespace) -> dict:
    from lstm_ae.baselines.pca import pca_reconstruct
    from lstm_ae.config import load_config

    cfg = load_config(Path("params.yaml"))
    x_train, _, x_test = _data(args.train_images, args.val_images, args.test_images)
    started, cpu_started = time.perf_counter(), time.process_time()
    recon = pca_reconstruct(x_train, x_test, cfg.model.latent_size, seed=cfg.seed).reshape(x_test.shape)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    scores = _scores(x_test, recon)
    return {
        "contender": "pca",
        "model": {"n_components": cfg.model.latent_size},
        **scores,
        "train_wall_s": round(seconds, 1),
        "train_cpu_s": round(cpu_seconds, 1),
        "s_to_report_mse": round(seconds, 1) if scores["test_mse"] <= REPORT_MSE else None,
        "samples_per_s": round(len(x_train) / seconds, 1),
        "peak_rss_gib": _peak_rss_gib(),
    }


def _minutes(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds / 60:.1f} min"


def _cpu_minutes(row: dict) -> str:
    return (
        f"{row['train_cpu_s'] / 60:.1f} min" if "train_cpu_s" in row else "not measured"
    )  # runs before 2026-11-29


def table(rows: list[dict]) -> str:
    lines = [
        (
            "| contender | test MSE | PSNR | SSIM | training wall time | training CPU time "
            "| time to test MSE 0.0051 | samples/s | peak RSS |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['contender']} | {r['test_mse']:.5f} | {r['test_psnr']:.2f} dB | {r['test_ssim']:.3f} | "
            f"{_minutes(r['train_wall_s'])} | {_cpu_minutes(r)} |"
            f" {_minutes(r['s_to_report_mse'])} | {r['samples_per_s']} | {r['peak_rss_gib']} GiB |"
        )
    return "\n".join(lines)


def curve_figure(rows: list[dict], path: Path) -> None:
    """Test MSE after each epoch against training time, one line per LSTM contender, PCA as a
    level line: where each recipe stands at any budget, not only at its end."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(9, 5.5))
    for row in rows:
        if "epochs" in row:
            minutes = [e["trained_s"] / 60 for e in row["epochs"]]
            axes.plot(minutes, [e["test_mse"] for e in row["epochs"]], marker=".", label=row["contender"])
        else:
            axes.axhline(
                row["test_mse"], color="black", linestyle="--", label=f"{row['contender']} (fit in seconds)"
            )
    axes.set(
        xlabel="training time (min)", ylabel="test MSE", yscale="log", title="Test MSE against training time"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contenders",
        nargs="+",
        default=list(CONTENDERS),
        metavar="NAME[:KEY=VALUE...]",
        help=f"from {', '.join(CONTENDERS)}, LSTMs optionally with changed keys (see above)",
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall time per LSTM contender")
    parser.add_argument("--train-images", type=int, default=40_000)
    parser.add_argument("--val-images", type=int, default=10_000)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument(
        "--max-epochs",
        type=int,
        help="every LSTM contender's epoch limit (default: its own), "
        "e.g. 200 to let the default recipe use the whole --minutes budget",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one contender in this process
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="RESULT.json",
        help="only draw RESULT.png from an earlier run's result file",
    )
    args = parser.parse_args()
    if args.plot:
        curve_figure(json.loads(args.plot.read_text())["rows"], args.plot.with_suffix(".png"))
        return
    for spec in args.contenders:  # every spec checked before an hour of training starts
        try:
            if contender(spec)[0] != "pca":
                configs(spec, args.max_epochs)
        except (argparse.ArgumentTypeError, ConfigError) as exc:
            parser.error(f"--contenders {spec}: {exc}")
    if args.one:
        result = measure_pca(args) if args.one == "pca" else measure_lstm(args.one, args)
        print("RESULT " + json.dumps(result), flush=True)
        return
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "train_images": args.train_images,
        "val_images": args.val_images,
        "test_images": args.test_images,
        "minutes": args.minutes,
        "max_epochs": args.max_epochs,
    }
    path = Path("benchmarks/out") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name in args.contenders:
        command = [sys.executable, __file__, "--one", name, *sys.argv[1:]]
        out = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            check=False,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            sys.exit(f"{name} failed (exit code {out.returncode}); its output is above")
        rows.append(json.loads(lines[0].removeprefix("RESULT ")))
        # After every contender, so an interrupted hour-long run keeps what it measured.
        atomic.write_text(path, json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    curve_figure(rows, path.with_suffix(".png"))
    print(table(rows))
    print(f"\n(raw numbers: {path}; test MSE against training time: {path.with_suffix('.png')})")


if __name__ == "__main__":
    main()
