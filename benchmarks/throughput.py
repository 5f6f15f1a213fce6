"""Which way of training the report's model is fastest? (docs/results.md: Throughput of the report's model)

Training throughput of the report's model: its plain script against our train path and
compiler, batch-size and precision options, each in a fresh process on the same images. It
answers the throughput questions: does our train path (callbacks, MLflow logging) cost anything
over a plain model.fit, and can XLA, unrolled loops, larger batches or bfloat16 train twice the
samples per second on this CPU? Every run in docs/results.md's section Throughput of the
report's model is one of this script's, with its command and result file.

Run in the project root after `dvc repro preprocess` (the full data set), e.g.

    python benchmarks/throughput.py --train-images 6000 --val-images 1500 --epochs 3

Variants (the report's architecture: LSTM(512) -> LSTM(256) -> RepeatVector -> LSTM(256) ->
LSTM(96, sigmoid), Adam 1e-4, MSE):
  report        model.fit on float32 arrays, batch 128: the report's own script
  ours          lstm_ae.model.fit.fit with the train stage's callbacks (early stopping,
                TerminateOnNaN, per-epoch MLflow logging into a throw-away SQLite store)
  report_b256   as report with batch 256 (fewer, larger steps: optimisation changes too)
  report_xla    as report, compiled with jit_compile=True (XLA)
  report_xla_b256  as report_xla with batch 256
  report_unroll as report with every LSTM unrolled (unroll=True: the 32 steps become straight-line
                graph code instead of a while loop; same weights, same math)
  report_unroll_b256  as report_unroll with batch 256
  report_b512, report_b1024, report_b2048  as report with batch 512, 1024, 2048
  report_bf16   as report with model.precision mixed_bfloat16 (bfloat16 math, float32 weights)
  report_bf16_b512, report_bf16_b1024, report_bf16_b2048  as report_bf16 with batch 512, 1024, 2048

Each variant trains --epochs epochs in its own process. The processes start together but take
turns, one epoch at a time, in forward order in even rounds and reverse order in odd ones
(A B, B A, A B, ...): this machine's speed changes by up to 2x from one minute to the next
(other tenants), and interleaving spreads those phases over every variant instead of whichever
ran then, while the alternating order keeps a steady drift from always favouring the same one.
Besides wall time, each epoch's CPU time (user + system, all threads of the process) is recorded:
it leaves out time the process waited for a CPU, so it shows whether a gap is work or waiting. The first
epoch includes tracing and compilation and is reported apart. An epoch's time runs from its
start to the end of the last epoch-end callback, so it holds the validation pass and, for
`ours`, the MLflow logging. Samples per second = training images / median of the later epochs;
"vs report" is the median over rounds of the report's epoch time over the variant's in the same
round. Prints one JSON line per variant and a table; writes benchmarks/out/throughput-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lstm_ae import atomic

VARIANTS = (
    "report",
    "ours",
    "report_b256",
    "report_xla",
    "report_xla_b256",
    "report_unroll",
    "report_unroll_b256",
    "report_b512",
    "report_b1024",
    "report_b2048",
    "report_bf16",
    "report_bf16_b512",
    "report_bf16_b1024",
    "report_bf16_b2048",
)
TURN_TIMEOUT_S = 3600  # a variant that waits longer than this for its turn gives up


def _ready_file(turn_file: Path, index: int) -> Path:
    """The file variant ``index`` creates once it is about to train (beside the turn file)."""
    return turn_file.parent / f"ready-{index}"


def _unrolled(model):
    """The same model, same weights, with every LSTM's loop unrolled."""
    import keras

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.LSTM):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    unrolled = keras.models.clone_model(model, clone_function=clone)
    unrolled.set_weights(model.get_weights())
    return unrolled


def _turn(epoch: int, index: int, count: int) -> int:
    """The turn number of variant ``index``'s ``epoch``: forward order in even rounds, reverse in odd."""
    return epoch * count + (index if epoch % 2 == 0 else count - 1 - index)


def _wait_for(turn_file: Path, turn: int) -> None:
    """Block until ``turn_file`` holds ``turn`` (the main process writes 0 once every variant is ready)."""
    deadline = time.monotonic() + TURN_TIMEOUT_S
    while True:
        current = int(turn_file.read_text())
        if current == turn:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"waited {TURN_TIMEOUT_S} s for turn {turn} (now {current}): another variant died"
            )
        time.sleep(0.02)


def measure(
    variant: str, train_images: int, val_images: int, epochs: int, turn_file: Path, index: int, count: int
) -> dict:
    """Runs in its own process: import, load, build, then fit, taking turns with the other variants."""
    import keras
    import numpy as np

    from lstm_ae.config import load_config
    from lstm_ae.data.dataset import load_dataset
    from lstm_ae.data.sequences import scale
    from lstm_ae.model.autoencoder import build_autoencoder
    from lstm_ae.paths import PROCESSED

    report = load_config(Path("params.yaml"), preset="report")  # presets/report.yaml
    data = load_dataset(PROCESSED)
    x_train, x_val = scale(data.x_train[:train_images]), scale(data.x_val[:val_images])
    keras.utils.set_random_seed(42)
    precision = "mixed_bfloat16" if "bf16" in variant else "float32"
    model = build_autoencoder(report.model.model_copy(update={"precision": precision}))
    if "unroll" in variant:
        model = _unrolled(model)
    suffix = variant.rpartition("_b")[2]  # report_bf16_b512 -> 512; report, report_bf16 -> 128
    batch = int(suffix) if suffix.isdigit() else 128
    times: list[float] = []
    cpu_times: list[float] = []

    class Turns(keras.callbacks.Callback):
        """Waits for this variant's turn before each epoch and hands the turn on after it; the
        last callback, so its clocks cover the others' epoch-end work."""

        def on_epoch_begin(self, epoch, logs=None):
            _wait_for(turn_file, _turn(epoch, index, count))
            self.started, self.cpu_started = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)
            cpu_times.append(time.process_time() - self.cpu_started)
            atomic.write_text(turn_file, str(_turn(epoch, index, count) + 1))

    if variant == "ours":
        import mlflow

        from lstm_ae.model import fit as training
        from lstm_ae.tracking import curves

        store = tempfile.mkdtemp()
        mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
        cfg = report.train.model_copy(update={"batch_size": batch, "max_epochs": epochs})
        with mlflow.start_run():
            _ready_file(turn_file, index).touch()
            history = training.fit(
                model, x_train, x_val, cfg, callbacks=[curves.EpochLogger(), Turns()], verbose=2
            )
        val_loss = history["val_loss"][-1]
    else:
        model.compile(
            optimizer=keras.optimizers.Adam(report.train.learning_rate),
            loss="mse",
            jit_compile=variant.startswith("report_xla"),
        )
        _ready_file(turn_file, index).touch()
        history = model.fit(
            x_train,
            x_train,
            validation_data=(x_val, x_val),
            batch_size=batch,
            epochs=epochs,
            callbacks=[Turns()],
            verbose=0,
        )
        val_loss = history.history["val_loss"][-1]
    steady = float(np.median(times[1:])) if len(times) > 1 else float("nan")
    steady_cpu = float(np.median(cpu_times[1:])) if len(cpu_times) > 1 else float("nan")
    return {
        "variant": variant,
        "batch_size": batch,
        "train_images": len(x_train),
        "val_images": len(x_val),
        "epoch_seconds": [round(t, 2) for t in times],
        "first_epoch_s": round(times[0], 2),
        "steady_epoch_s": round(steady, 2),
        "samples_per_s": round(len(x_train) / steady, 1),
        "epoch_cpu_seconds": [round(t, 2) for t in cpu_times],
        "steady_epoch_cpu_s": round(steady_cpu, 2),
        "val_loss_last": val_loss,
    }


def _ratio(base: list[float], variant: list[float]) -> float:
    """Median over rounds (first epochs left out) of the report's epoch time over the variant's."""
    return statistics.median(b / t for b, t in zip(base[1:], variant[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--train-images", type=int, default=6000)
    parser.add_argument("--val-images", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one variant here
    parser.add_argument("--turn-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = measure(
            args.one, args.train_images, args.val_images, args.epochs, args.turn_file, args.index, args.count
        )
        print("RESULT " + json.dumps(result), flush=True)
        return
    count = len(args.variants)
    with tempfile.TemporaryDirectory() as tmp:
        turn_file = Path(tmp) / "turn"
        atomic.write_text(turn_file, "-1")  # nobody's turn until every variant is ready
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    variant,
                    "--train-images",
                    str(args.train_images),
                    "--val-images",
                    str(args.val_images),
                    "--epochs",
                    str(args.epochs),
                    "--turn-file",
                    str(turn_file),
                    "--index",
                    str(index),
                    "--count",
                    str(count),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
            for index, variant in enumerate(args.variants)
        ]
        try:
            ready = [_ready_file(turn_file, index) for index in range(count)]
            while not all(path.exists() for path in ready):
                if any(worker.poll() is not None for worker in workers):
                    break  # a variant died before training: its error is reported below
                time.sleep(0.1)
            else:
                atomic.write_text(turn_file, "0")
            outputs = [worker.communicate() for worker in workers]
        finally:
            for worker in workers:
                worker.kill()
    rows = []
    for variant, worker, (stdout, stderr) in zip(args.variants, workers, outputs):
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        if worker.returncode != 0 or not lines:
            sys.exit(f"{variant} failed ({worker.returncode}):\n{stderr[-3000:]}")
        rows.append(json.loads(lines[0].removeprefix("RESULT ")))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r["variant"] == "report"), rows[0])
    print(
        "\n| variant | batch | first epoch | later epochs (median, min-max) | samples/s | vs report "
        "| CPU s per later epoch | vs report (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        later = row["epoch_seconds"][1:]
        row["vs_report"] = round(_ratio(base["epoch_seconds"], row["epoch_seconds"]), 3)
        row["vs_report_cpu"] = round(_ratio(base["epoch_cpu_seconds"], row["epoch_cpu_seconds"]), 3)
        print(
            f"| {row['variant']} | {row['batch_size']} | {row['first_epoch_s']} s "
            f"| {row['steady_epoch_s']} s "
            f"({min(later)}-{max(later)}) | {row['samples_per_s']} | {row['vs_report']:.2f}x "
            f"| {row['steady_epoch_cpu_s']} s | {row['vs_report_cpu']:.2f}x |"
        )
    path = Path("benchmarks/out") / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    atomic.write_text(
        path, json.dumps({"command": command, "cpus": os.cpu_count(), "results": rows}, indent=2) + "\n"
    )
    print(f"\n(raw numbers: {path})")


if __name__ == "__main__":
    main()
