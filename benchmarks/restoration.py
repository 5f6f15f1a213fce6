"""Do the LSTMs beat classical methods and PCA at denoise and deblur? (docs/results.md: Restoration)

The restoration benchmark: the restorer, its ablation and the bottlenecked autoencoder against
the classical methods and PCA on denoise and deblur, side by side on the same test images in one
run. It asks whether an LSTM model trained for at most 30 minutes on 2 CPU cores reaches 28.5 dB
PSNR on denoise (sigma 0.1) and 32 dB on deblur (sigma 1 px), and beats the classical methods.
Its runs are behind docs/results.md's section Restoration: the restorer against classical methods
(tables, figures, the rate and batch-size run) and the Measured table of docs/restoration.md.

Run in the project root after `dvc repro preprocess` (the full data set: 40,000 train, 10,000
validation, 10,000 test images), e.g.

    python benchmarks/restoration.py --minutes 30           # everything, 30 min of training per LSTM and task
    python benchmarks/restoration.py --tasks denoise --contenders input tv restorer pointwise
    python benchmarks/restoration.py --contenders input pca wiener restorer:train.learning_rate=0.001
    python benchmarks/restoration.py --minutes 0.3 --train-images 300 --val-images 100 \\
        --test-images 100 --classical-val-images 50 --out /tmp/r.json --figure /tmp/r.png   # a smoke run

Tasks (corruption.* of params.yaml; the inputs are the ones the evaluate stage scores):
  denoise  Gaussian noise, sigma corruption.noise_sigma (0.1)
  deblur   Gaussian blur, corruption.blur_sigma px (1)

Contenders, each scored by mean per-image PSNR and SSIM on the corrupted test images:
  input        the corrupted input itself: the floor every restoration must beat
  pca          PCA at the autoencoder's code size (the last of model.encoder_widths), fitted on the
               clean training images, applied to the corrupted test inputs
  tv, wavelet, nl_means      (denoise) lstm_ae.baselines.classical's denoisers
  wiener, richardson_lucy    (deblur) its deconvolutions of the known blur
               Each knows the corruption's sigma; its one strength is chosen by mean PSNR on the first
               --classical-val-images corrupted validation images, never on test images.
  autoencoder  the bottlenecked LSTM autoencoder of params.yaml's model and train sections
  restorer     the same sections with model.family restorer (LSTMs sweep rows and columns, no bottleneck)
  pointwise    the restorer with model.restorer.sweeps false: the ablation where no pixel sees another
A contender is run on each selected task it applies to. An LSTM contender may change keys of its
model and train sections, checked like params.yaml: `restorer:model.restorer.units=64`,
`autoencoder:train.learning_rate=0.001:train.batch_size=128` (values are YAML).

Each LSTM contender trains on each task in a fresh process, through lstm_ae.model.fit.fit (what the
train stage runs), for --minutes of training wall time: a callback stops training after the batch
that spends the budget, mid-epoch (Keras then still validates that partial epoch). train.max_epochs
is set to --max-epochs so that the budget, not the epoch count, ends training; schedules that
depend on max_epochs then see a long run (cooldown stays at its full rate, cosine in its warm-up)
unless a spec sets train.max_epochs itself. Weights scored: what fit returns, i.e. its early
stopping's restore_best_weights: the weights at the epoch end (the partial last epoch included)
with the lowest validation loss, chosen on validation images only. Every epoch's validation loss
and the epoch chosen are recorded, so a reader sees whether that was the last one.

Training time counts the training batches only (the first includes tracing, about half a minute),
not the validation passes, start-up or scoring.
CPU time is the process's user plus system time over those batches (all threads): on a shared
machine wall time for the same work swings several-fold, CPU time shows the work. "CPU s/epoch"
is that CPU time scaled to one pass over the training images (--train-images); samples/s are
training images seen per second of training. For pca, "training" is fitting and applying the
PCA; for classical methods it is tuning the strength (wall time only in the table; CPU time
includes the --n-jobs worker processes, which are shut down after each call to count it). Test
images per second and CPU ms per test image (inference) are in the JSON for every contender.

Writes benchmarks/results/restoration.json (--out; after every row, so an interrupted run keeps
what it measured), prints a Markdown table, and saves benchmarks/results/restoration.png (--figure):
the first 5 test images, clean, corrupted and each contender's output, one block per task.
Measured on the CIFAR-10 JPEG mirror when the data came from ../shared/cifar10.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from lstm_ae import atomic
from lstm_ae.baselines import classical
from lstm_ae.config import Config, ConfigError, load_config, parse_config
from lstm_ae.data.corruption import Corruption
from lstm_ae.data.sequences import to_images, to_sequences

TASKS = ("denoise", "deblur")
CLASSICAL = {method: task for task in TASKS for method in classical.methods(task)}
# Each LSTM contender: the keys it lays over params.yaml before the spec's own.
LSTMS = {
    "autoencoder": {"model": {"family": "autoencoder"}},
    "restorer": {"model": {"family": "restorer"}},
    "pointwise": {"model": {"family": "restorer", "restorer": {"sweeps": False}}},
}
CONTENDERS = ("input", "pca", *CLASSICAL, *LSTMS)
FIGURE_IMAGES = 5  # the first test images, shown in the figure
PREDICT_BATCH = 256
INTERNAL = ("one", "one_task", "workdir")  # options the parent passes to an LSTM contender's process


def contender(spec: str) -> tuple[str, dict]:
    """``NAME[:SECTION.KEY=VALUE...]`` -> (NAME, nested changes); ArgumentTypeError if malformed."""

    name, *settings = spec.split(":")
    if name not in CONTENDERS:
        raise argparse.ArgumentTypeError(f"{name!r} is not a contender; choose from {', '.join(CONTENDERS)}")
    changes: dict = {}
    for item in settings:
        key, equals, value = item.partition("=")
        *sections, leaf = key.split(".")
        if name not in LSTMS or not equals or not sections or sections[0] not in ("model", "train"):
            raise argparse.ArgumentTypeError(
                f"{item!r} in {spec!r}: expected model.KEY=VALUE or train.KEY=VALUE after an LSTM contender"
            )
        node = changes
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = yaml.safe_load(value)
    return name, changes


def _merge(base: dict, top: dict) -> dict:
    """``base`` with ``top``'s values put in, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in top.items():
        inner = base.get(key)
        merged[key] = _merge(inner, value) if isinstance(value, dict) and isinstance(inner, dict) else value
    return merged


def lstm_config(spec: str, task: str, max_epochs: int, params: Path) -> Config:
    """``params`` on ``task`` with the contender's keys, then the spec's, validated like params.yaml."""
    name, changes = contender(spec)
    raw = load_config(params).model_dump(mode="json")
    for top in ({"task": task, "train": {"max_epochs": max_epochs}}, LSTMS[name], changes):
        raw = _merge(raw, top)
    return parse_config(raw, "contender spec")


@dataclass(frozen=True)
class TaskData:
    """One task's clean and corrupted (N, 32, 96) row sequences in [0, 1]."""

    task: str
    sigma: float  # the corruption's known sigma: noise for denoise, blur (px) for deblur
    x_train: np.ndarray
    clean_val: np.ndarray
    corrupted_val: np.ndarray
    clean_test: np.ndarray
    corrupted_test: np.ndarray


def task_data(task: str, args: argparse.Namespace) -> TaskData:
    """The subsets asked for, corrupted as the evaluate stage does (fixed seeds per split)."""
    from lstm_ae.data.dataset import load_dataset

    cfg = load_config(args.params)
    corruption = Corruption.for_task(task, cfg.corruption.blur_sigma, cfg.corruption.noise_sigma)
    data = load_dataset(args.data).scaled()
    x_val, x_test = data.x_val[: args.val_images], data.x_test[: args.test_images]
    return TaskData(
        task=task,
        sigma=corruption.strength,
        x_train=data.x_train[: args.train_images],
        clean_val=x_val,
        corrupted_val=corruption.fixed(x_val, cfg.seed, "val"),
        clean_test=x_test,
        corrupted_test=corruption.fixed(x_test, cfg.seed, "test"),
    )


def scores(clean: np.ndarray, restored: np.ndarray) -> dict:
    """Mean per-image PSNR and SSIM of row sequences."""
    from lstm_ae import metrics

    clean, restored = to_images(clean), to_images(restored)
    return {
        "test_psnr": float(metrics.psnr_per_image(clean, restored).mean()),
        "test_ssim": float(metrics.ssim_per_image(clean, restored).mean()),
    }


def _cpu_s() -> float:
    """User plus system CPU seconds of this process and of its finished, reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _peak_rss_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # KiB on Linux


def _timed(function, *arguments):
    """``function(*arguments)`` with its wall and CPU seconds; joblib's workers are shut down after it
    so that their CPU time is counted (a reaped child's time joins the parent's children time)."""
    from joblib.externals.loky import get_reusable_executor

    started, cpu_started = time.perf_counter(), _cpu_s()
    result = function(*arguments)
    get_reusable_executor().shutdown(wait=True)
    return result, time.perf_counter() - started, _cpu_s() - cpu_started


def _row(
    name: str, d: TaskData, restored: np.ndarray, test_s: float | None, test_cpu_s: float | None
) -> dict:
    """The fields every contender's row has; ``restored`` is its output on the corrupted test images,
    which took ``test_s`` and ``test_cpu_s`` seconds to make (None: not measured apart)."""
    timed = test_s is not None and test_cpu_s is not None
    return {
        "contender": name,
        "task": d.task,
        "sigma": d.sigma,
        **scores(d.clean_test, restored),
        "test_images_per_s": round(len(restored) / test_s, 1) if timed else None,
        "test_cpu_ms_per_image": round(1000 * test_cpu_s / len(restored), 3) if timed else None,
        "param_count": 0,
        "train_wall_s": 0.0,
        "train_cpu_s": 0.0,
        "samples_per_s": None,
        "cpu_s_per_epoch": None,
    }


def measure_input(d: TaskData) -> tuple[dict, np.ndarray]:
    return _row("input", d, d.corrupted_test, None, None), d.corrupted_test


def measure_pca(d: TaskData, params: Path) -> tuple[dict, np.ndarray]:
    """PCA fitted on the clean training images, applied to the corrupted test images, timed as one."""
    from lstm_ae.baselines.pca import pca_reconstruct

    cfg = load_config(params)
    n = cfg.model.latent_size
    restored, wall, cpu = _timed(pca_reconstruct, d.x_train, d.corrupted_test, n, cfg.seed)
    row = _row("pca", d, restored, None, None)  # fit and apply are one call: both count as training
    row.update(
        n_components=n,
        param_count=n * d.x_train[0].size + d.x_train[0].size,  # components and mean
        train_wall_s=round(wall, 1),
        train_cpu_s=round(cpu, 1),
        samples_per_s=round(len(d.x_train) / wall, 1),
        cpu_s_per_epoch=round(cpu, 1),
    )
    return row, restored


def measure_classical(method: str, d: TaskData, val_images: int, n_jobs: int) -> tuple[dict, np.ndarray]:
    """Strength tuned on the first ``val_images`` validation images, then the test images restored."""
    val_in, val_clean = to_images(d.corrupted_val[:val_images]), to_images(d.clean_val[:val_images])
    (best, grid), tune_s, tune_cpu = _timed(
        lambda: classical.tune_strength(method, val_in, val_clean, d.sigma, n_jobs=n_jobs)
    )
    out, test_s, test_cpu = _timed(
        lambda: classical.restore(method, to_images(d.corrupted_test), best, d.sigma, n_jobs=n_jobs)
    )
    restored = to_sequences(out)
    row = _row(method, d, restored, test_s, test_cpu)
    row.update(
        strength=best,
        val_psnr_by_strength={str(k): round(v, 3) for k, v in grid.items()},
        tune_val_images=len(val_in),
        train_wall_s=round(tune_s, 1),
        train_cpu_s=round(tune_cpu, 1),
        n_jobs=n_jobs,
    )
    return row, restored


def _budget_clock(budget_s: float, batch_size: int, n_train: int):
    """A Keras callback that times each epoch's training batches and stops training, mid-epoch,
    after the batch that spends ``budget_s`` seconds of them."""
    import keras

    class BudgetClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[dict] = []
            self.trained_s = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.started, self.cpu_started = time.perf_counter(), time.process_time()
            self.steps, self.seconds, self.cpu_s = 0, 0.0, 0.0

        def on_train_batch_end(self, batch, logs=None):
            self.steps = batch + 1
            self.seconds = time.perf_counter() - self.started
            self.cpu_s = time.process_time() - self.cpu_started
            if self.trained_s + self.seconds >= budget_s:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            self.trained_s += self.seconds
            samples = min(self.steps * batch_size, n_train)
            self.epochs.append(
                {
                    "epoch": epoch + 1,
                    "samples": samples,
                    "partial": samples < n_train,
                    "train_s": round(self.seconds, 2),
                    "cpu_s": round(self.cpu_s, 2),
                    "loss": float(logs["loss"]),
                    "val_loss": float(logs["val_loss"]),
                }
            )
            print(
                f"epoch {epoch + 1}: {samples} samples, {self.seconds:.0f} s, val {logs['val_loss']:.5f}",
                file=sys.stderr,
                flush=True,
            )

    return BudgetClock()


def measure_lstm(spec: str, task: str, args: argparse.Namespace) -> tuple[dict, np.ndarray]:
    """Runs in its own process: train under the time budget, then restore the corrupted test images."""
    import keras

    from lstm_ae.model.build import build_model
    from lstm_ae.model.fit import fit

    cfg = lstm_config(spec, task, args.max_epochs, args.params)
    d = task_data(task, args)
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg.model)
    clock = _budget_clock(args.minutes * 60, cfg.train.batch_size, len(d.x_train))
    fit(
        model,
        d.x_train,
        d.clean_val,
        cfg.train,
        callbacks=[clock],
        verbose=0,
        corruption=cfg.input_corruption,
        seed=cfg.seed,
    )
    if args.save_models:
        args.save_models.mkdir(parents=True, exist_ok=True)
        model.save(args.save_models / f"{task}-{spec.replace(':', '_')}.keras")
    started, cpu_started = time.perf_counter(), time.process_time()
    restored = model.predict(d.corrupted_test, batch_size=PREDICT_BATCH, verbose=0)
    test_s, test_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    epochs = clock.epochs
    seen = sum(e["samples"] for e in epochs)
    wall, cpu = sum(e["train_s"] for e in epochs), sum(e["cpu_s"] for e in epochs)
    row = _row(spec, d, restored, test_s, test_cpu)
    row.update(
        param_count=model.count_params(),
        model=cfg.model.model_dump(mode="json"),
        train=cfg.train.model_dump(mode="json"),
        train_wall_s=round(wall, 1),
        train_cpu_s=round(cpu, 1),
        samples_seen=seen,
        samples_per_s=round(seen / wall, 1),
        cpu_s_per_epoch=round(cpu * len(d.x_train) / seen, 1),
        epoch_images=len(d.x_train),
        epochs=epochs,
        scored_epoch=int(np.argmin([e["val_loss"] for e in epochs])) + 1,  # what early stopping restored
        peak_rss_gib=_peak_rss_gib(),
    )
    return row, restored


def run_lstm(spec: str, task: str, workdir: Path, params: Path) -> tuple[dict, np.ndarray]:
    """measure_lstm in a fresh process; its row and its first test outputs come back through files.
    ``params``: the settings the run started with, so editing params.yaml meanwhile changes nothing."""
    folder = Path(tempfile.mkdtemp(prefix=f"{task}-", dir=workdir))
    command = [
        sys.executable,
        __file__,
        *sys.argv[1:],
        "--params",
        params,
        "--one",
        spec,
        "--one-task",
        task,
        "--workdir",
        folder,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([str(part) for part in command], env=env, check=False)
    if done.returncode != 0 or not (folder / "row.json").exists():
        sys.exit(f"{spec} on {task} failed (exit code {done.returncode}); its output is above")
    return json.loads((folder / "row.json").read_text()), np.load(folder / "examples.npy")


def measure(spec: str, d: TaskData, args: argparse.Namespace, workdir: Path) -> tuple[dict, np.ndarray]:
    name = contender(spec)[0]
    if name == "input":
        return measure_input(d)
    if name == "pca":
        return measure_pca(d, args.params)
    if name in CLASSICAL:
        return measure_classical(name, d, args.classical_val_images, args.n_jobs)
    return run_lstm(spec, d.task, workdir, args.params)


def applies(spec: str, task: str) -> bool:
    """Classical methods serve their own task only; the rest serve both."""
    return CLASSICAL.get(contender(spec)[0], task) == task


def _cell(value, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def table(rows: list[dict]) -> str:
    lines = [
        "| contender | task | test PSNR | test SSIM | params | samples/s | CPU s/epoch | training min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['contender']} | {r['task']} | {r['test_psnr']:.2f} dB | {r['test_ssim']:.3f} "
            f"| {r['param_count']:,} | {_cell(r['samples_per_s'])} | {_cell(r['cpu_s_per_epoch'])} "
            f"| {r['train_wall_s'] / 60:.1f} |"
        )
    return "\n".join(lines)


def figure(blocks: dict[str, dict], path: Path) -> None:
    """One block per task: a row per test image; clean, then each contender's output with its PSNR."""
    from matplotlib.figure import Figure

    from lstm_ae.metrics import psnr_per_image

    columns = max(len(outputs) for outputs in blocks.values())  # clean plus the contenders
    n = min(FIGURE_IMAGES, *(len(outputs["clean"]) for outputs in blocks.values()))
    fig = Figure(figsize=(1.2 * columns + 0.5, 1.35 * n * len(blocks) + 0.5), layout="constrained")
    for sub, (task, outputs) in zip(
        np.atleast_1d(fig.subfigures(len(blocks), 1)), blocks.items(), strict=True
    ):
        sub.suptitle(task, fontsize=10)
        axes = sub.subplots(n, columns, squeeze=False)
        clean = to_images(outputs["clean"][:n])
        for col, (name, sequences) in enumerate(outputs.items()):
            images = to_images(sequences[:n])
            psnr = psnr_per_image(clean, images)
            for row, ax in enumerate(axes[:, col]):
                ax.imshow(np.clip(images[row], 0, 1), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel("" if name == "clean" else f"{psnr[row]:.1f} dB", fontsize=7)
            axes[0, col].set_title(name.split(":")[0], fontsize=8)
        for ax in axes[:, len(outputs) :].ravel():
            ax.set_axis_off()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument(
        "--contenders",
        nargs="+",
        default=list(CONTENDERS),
        metavar="NAME[:KEY=VALUE...]",
        help=", ".join(CONTENDERS),
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall time per LSTM and task")
    parser.add_argument("--max-epochs", type=int, default=1000, help="train.max_epochs of the LSTMs")
    parser.add_argument("--train-images", type=int, default=40_000)
    parser.add_argument("--val-images", type=int, default=10_000)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument(
        "--classical-val-images", type=int, default=500, help="tune classical strengths on these"
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib workers of the classical methods")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the settings file")
    parser.add_argument("--data", type=Path, default=Path("data/processed/cifar10.npz"))
    parser.add_argument(
        "--save-models", type=Path, help="keep each LSTM's trained model here, as TASK-CONTENDER.keras"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/restoration.json"))
    parser.add_argument("--figure", type=Path, default=Path("benchmarks/results/restoration.png"))
    # Internal: measure one LSTM contender on one task in this process, writing into --workdir.
    for internal in INTERNAL:
        parser.add_argument(f"--{internal.replace('_', '-')}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for spec in args.contenders:  # every spec checked before hours of training start
        try:
            name = contender(spec)[0]
            for task in args.tasks if name in LSTMS else ():
                lstm_config(spec, task, args.max_epochs, args.params)
        except (argparse.ArgumentTypeError, ConfigError) as exc:
            parser.error(f"--contenders {spec}: {exc}")
        if not any(applies(spec, task) for task in args.tasks):
            parser.error(f"--contenders {spec}: serves task {CLASSICAL[name]}, which --tasks leaves out")
    return args


def main() -> None:
    args = parse_args()
    if args.one:
        row, restored = measure_lstm(args.one, args.one_task, args)
        np.save(Path(args.workdir) / "examples.npy", restored[:FIGURE_IMAGES])
        atomic.write_text(Path(args.workdir) / "row.json", json.dumps(row))
        return
    cfg = load_config(args.params)
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in INTERNAL},
        "seed": cfg.seed,
        "corruption": cfg.corruption.model_dump(mode="json"),
    }
    rows: list[dict] = []
    blocks: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="restoration-") as workdir:
        # What params.yaml says now, for the whole run: an edit during hours of training must not
        # change (or, with a key this code does not know yet, stop) the contenders still to come.
        args.params = Path(workdir) / "params.yaml"
        atomic.write_text(args.params, yaml.safe_dump({**cfg.model_dump(mode="json"), "preset": "default"}))
        for task in args.tasks:
            d = task_data(task, args)
            blocks[task] = {"clean": d.clean_test[:FIGURE_IMAGES]}
            for spec in (s for s in args.contenders if applies(s, task)):
                print(f"{spec} on {task} ...", file=sys.stderr, flush=True)
                row, restored = measure(spec, d, args, Path(workdir))
                rows.append(row)
                blocks[task][spec] = restored[:FIGURE_IMAGES]
                # After every row, so an interrupted hours-long run keeps what it measured.
                atomic.write_text(args.out, json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(table(rows))
    figure(blocks, args.figure)
    print(f"\n(raw numbers: {args.out}; figure: {args.figure})")


if __name__ == "__main__":
    main()
