#!/usr/bin/env python3
"""How long is an epoch on a GPU, and which LSTMs run on cuDNN? (benchmarks/gpu_epoch_time.md)

Epoch time of the project's LSTM autoencoder for both output heads (Keras 3, JAX backend by
default). Its table is benchmarks/gpu_epoch_time.md, which docs/results.md links (Throughput of
the report's model: GPU epoch times).

Builds the model with ``lstm_ae.model.autoencoder.build_autoencoder`` and compiles it with
``lstm_ae.model.fit.compile_autoencoder`` (Adam + MSE, params.yaml's learning-rate schedule),
then trains on random float32 sequences of the real shape (32, 96): one warm-up epoch (XLA
compilation included, reported separately) and N timed epochs. Timing does not depend on the
values. ``--model report`` (the default) is the report's architecture; ``--model default`` is
params.yaml's model section (bidirectional, row index and all); ``--heads`` sets the head.

It also records whether Keras sent each LSTM to cuDNN: Keras 3's JAX backend implements
``backend.lstm`` with ``jax.experimental.rnn.lstm`` (a cuDNN custom call) when the GPU is the
default device, the activation is tanh, the recurrent activation sigmoid, there is a bias, no
mask and no unroll; otherwise it raises NotImplementedError and the layer falls back to the
generic ``lax.scan`` loop. The script wraps ``backend.lstm`` to see which way each LSTM went,
and (JAX only) greps the lowered train step for cuDNN custom calls and while loops.

Usage (repository root):
    KERAS_BACKEND=jax PYTHONPATH=src python benchmarks/gpu_epoch_time.py
    python benchmarks/gpu_epoch_time.py --train 512 --val 128 --epochs 1   # quick CPU check
Writes gpu_epoch_time.md / gpu_epoch_time.json to $OUT when OUT is set (or to --out-dir).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import argparse
import gc
import json
import math
import platform
import re
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import keras
import numpy as np
from keras.src import backend as kbackend

from lstm_ae.config import load_config
from lstm_ae.data.sequences import FEATURES, ROWS
from lstm_ae.model.autoencoder import build_autoencoder
from lstm_ae.model.fit import compile_autoencoder

BACKEND = keras.backend.backend()

# ---------------------------------------------------------------------------------------------
# cuDNN probe: wrap the backend's fused-LSTM entry point that keras.layers.LSTM.inner_loop calls.
_ORIGINAL_LSTM = kbackend.lstm
_PROBE: dict[tuple, str] = {}
_FORCE_NO_CUDNN = False


def _act_name(fn) -> str:
    return getattr(fn, "__name__", repr(fn))


def _probing_lstm(*args, **kwargs):
    units = int(kwargs["recurrent_kernel"].shape[0])
    key = (units, _act_name(kwargs.get("activation")), bool(kwargs.get("return_sequences")))
    if _FORCE_NO_CUDNN:
        _PROBE[key] = "lax.scan fallback (cuDNN disabled by the benchmark)"
        raise NotImplementedError("disabled by benchmark")
    try:
        out = _ORIGINAL_LSTM(*args, **kwargs)
    except NotImplementedError as exc:
        reason = str(exc)
        if not reason:
            try:
                ok = kbackend.cudnn_ok(
                    kwargs.get("activation"),
                    kwargs.get("recurrent_activation"),
                    kwargs.get("unroll", False),
                    kwargs.get("bias") is not None,
                )
            except Exception:  # other backends' signatures differ
                ok = "?"
            gpu = "?"
            if BACKEND == "jax":
                import jax

                gpu = jax.default_backend()
            reason = f"cudnn_ok={ok}, activation={key[1]}, default backend={gpu}, mask={args[3] is not None}"
        _PROBE[key] = f"lax.scan fallback ({reason})"
        raise
    _PROBE[key] = "cuDNN"
    return out


kbackend.lstm = _probing_lstm


# ---------------------------------------------------------------------------------------------
def _sync(model) -> None:
    """Wait for all queued device work that produced the model's step counter."""
    keras.ops.convert_to_numpy(model.optimizer.iterations.value)


class EpochTimer(keras.callbacks.Callback):
    """Per-epoch wall time, split into the training part and the validation part."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict] = []
        self._t0 = self._t_train = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._t_train = None

    def on_test_begin(self, logs=None):
        _sync(self.model)  # the train steps are dispatched asynchronously; finish them first
        self._t_train = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = {k: float(keras.ops.convert_to_numpy(v)) for k, v in (logs or {}).items()}
        _sync(self.model)
        t1 = time.perf_counter()
        t_train = self._t_train if self._t_train is not None else t1
        rec = {
            "epoch": epoch,
            "total_s": t1 - self._t0,
            "train_s": t_train - self._t0,
            "val_s": t1 - t_train,
            **values,
        }
        self.epochs.append(rec)
        print(
            f"    epoch {epoch}: {rec['total_s']:.2f} s"
            f" (train {rec['train_s']:.2f} s, val {rec['val_s']:.2f} s)"
            f" loss {values.get('loss', float('nan')):.5f}"
            f" val_loss {values.get('val_loss', float('nan')):.5f}",
            flush=True,
        )


def _hlo_summary(model, xb) -> dict:
    """JAX only: lower (not compile) one train step and count cuDNN custom calls and while loops."""
    if BACKEND != "jax":
        return {}
    import jax

    state = model._get_jax_state(
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=True,
        metrics_variables=True,
    )
    text = jax.jit(model.train_step).lower(state, (xb, xb)).as_text()
    targets = re.findall(r"custom_call\s*@([\w.$-]+)", text) + re.findall(
        r'call_target_name\s*=\s*"([^"]+)"', text
    )
    counts: dict[str, int] = {}
    for t in targets:
        counts[t] = counts.get(t, 0) + 1
    return {
        "custom_calls": counts,
        "cudnn_custom_calls": sum(n for t, n in counts.items() if "cudnn" in t.lower() or "rnn" in t.lower()),
        "while_loops": len(re.findall(r"stablehlo\.while", text)),
    }


def run_variant(head: str, cudnn: bool, x_train, x_val, args, params) -> dict:
    global _FORCE_NO_CUDNN
    _FORCE_NO_CUDNN = not cudnn
    _PROBE.clear()
    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(args.seed)
    chosen = load_config(ROOT / "params.yaml", preset="report") if args.model == "report" else params
    model_cfg = chosen.model.model_copy(update={"head": head})
    train_cfg = params.train.model_copy(
        update={"learning_rate": args.lr, "batch_size": args.batch_size, "max_epochs": 1 + args.epochs}
    )
    steps = math.ceil(len(x_train) / args.batch_size)
    model = compile_autoencoder(build_autoencoder(model_cfg), train_cfg, steps)
    timer = EpochTimer()
    t0 = time.perf_counter()
    model.fit(
        x_train,
        x_train,
        validation_data=(x_val, x_val),
        batch_size=args.batch_size,
        epochs=1 + args.epochs,
        shuffle=True,
        callbacks=[timer],
        verbose=0,
    )
    fit_s = time.perf_counter() - t0
    warm, timed = timer.epochs[0], timer.epochs[1:]
    totals = [e["total_s"] for e in timed]
    trains = [e["train_s"] for e in timed]
    vals = [e["val_s"] for e in timed]
    res = {
        "model": args.model,
        "head": head,
        "cudnn_allowed": cudnn,
        "params": int(model.count_params()),
        "warmup_epoch_s": warm["total_s"],
        "epoch_s_mean": float(np.mean(totals)) if totals else float("nan"),
        "epoch_s_min": float(np.min(totals)) if totals else float("nan"),
        "train_s_mean": float(np.mean(trains)) if trains else float("nan"),
        "train_s_min": float(np.min(trains)) if trains else float("nan"),
        "val_s_mean": float(np.mean(vals)) if vals else float("nan"),
        "train_samples_per_s": len(x_train) / float(np.mean(trains)) if trains else float("nan"),
        "fit_s": fit_s,
        "epochs": timer.epochs,
        "lstm_paths": {f"LSTM({u}, {a}, return_sequences={r})": p for (u, a, r), p in sorted(_PROBE.items())},
    }
    if not args.no_hlo:
        try:
            res["hlo"] = _hlo_summary(model, x_train[: args.batch_size])
        except Exception as exc:  # diagnostics only
            res["hlo"] = {"error": f"{type(exc).__name__}: {exc}"}
    _FORCE_NO_CUDNN = False
    del model
    return res


def _versions() -> dict:
    info = {"python": platform.python_version(), "keras": keras.__version__, "backend": BACKEND}
    if BACKEND == "jax":
        import jax

        info["jax"] = jax.__version__
        try:
            import jaxlib

            info["jaxlib"] = jaxlib.__version__
        except Exception:
            pass
        info["devices"] = [str(d) for d in jax.devices()]
        info["device_kinds"] = sorted({getattr(d, "device_kind", "?") for d in jax.devices()})
        info["default_backend"] = jax.default_backend()
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["devices"] = [d.name for d in tf.config.list_logical_devices()]
    return info


def _cudnn_cell(r: dict) -> str:
    paths = list(r["lstm_paths"].values())
    n = sum(p == "cuDNN" for p in paths)
    cell = f"{n}/{len(paths)}"
    hlo = r.get("hlo") or {}
    if "cudnn_custom_calls" in hlo:
        cell += f" (HLO: {hlo['cudnn_custom_calls']} cuDNN calls, {hlo['while_loops']} while loops)"
    return cell


def render(results: list[dict], info: dict, args) -> str:
    lines = [
        f"Keras {info['keras']} / {info['backend']}"
        + (
            f" {info.get('jax', info.get('tensorflow', ''))}"
            if info.get("jax") or info.get("tensorflow")
            else ""
        )
        + f" on {', '.join(info.get('device_kinds') or info.get('devices') or ['?'])};"
        f" {args.model} model; {args.train} train / {args.val} val sequences ({ROWS}x{FEATURES}),"
        f" batch {args.batch_size},"
        f" 1 warm-up + {args.epochs} timed epoch(s)",
        "",
        (
            "| head | cuDNN allowed | params | warm-up epoch s (incl. XLA compile) | epoch s mean"
            " | epoch s min | train part s mean | train samples/s | val part s mean | LSTMs on cuDNN |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['head']} | {'yes' if r['cudnn_allowed'] else 'no'} | failed: {r['error']} |||||||"
            )
            continue
        lines.append(
            f"| {r['head']} | {'yes' if r['cudnn_allowed'] else 'no (forced scan)'} | {r['params']:,} |"
            f" {r['warmup_epoch_s']:.2f} | {r['epoch_s_mean']:.2f} | {r['epoch_s_min']:.2f} |"
            f" {r['train_s_mean']:.2f} |"
            f" {r['train_samples_per_s']:,.0f} | {r['val_s_mean']:.2f} | {_cudnn_cell(r)} |"
        )
    lines.append("")
    for r in results:
        for name, path in r.get("lstm_paths", {}).items():
            lines.append(f"- {r['head']}{'' if r['cudnn_allowed'] else ' (no cuDNN)'}: {name}: {path}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=40_000)
    p.add_argument("--val", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up epoch")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--model",
        choices=("report", "default"),
        default="report",
        help="report: the report's architecture; default: params.yaml's model section",
    )
    p.add_argument("--heads", default="lstm,dense")
    p.add_argument(
        "--extra",
        default="dense:nocudnn",
        help="extra variants HEAD:nocudnn, run only if --deadline allows ('' for none)",
    )
    p.add_argument(
        "--deadline", type=float, default=240.0, help="seconds from start after which no extra variant starts"
    )
    p.add_argument("--no-hlo", action="store_true", help="skip lowering the train step to count cuDNN calls")
    p.add_argument("--out-dir", default=os.environ.get("OUT"))
    args = p.parse_args(argv)
    start = time.perf_counter()

    params = load_config(ROOT / "params.yaml")  # read once: a bad file fails before any device work
    info = _versions()
    print("versions:", json.dumps(info), flush=True)

    rng = np.random.default_rng(args.seed)
    x_train = rng.random((args.train, ROWS, FEATURES), dtype=np.float32)
    x_val = rng.random((args.val, ROWS, FEATURES), dtype=np.float32)

    variants = [(h.strip(), True) for h in args.heads.split(",") if h.strip()]
    extras = [(e.split(":")[0].strip(), False) for e in args.extra.split(",") if e.strip()]
    results: list[dict] = []

    def save() -> str:
        table = render(results, info, args)
        if args.out_dir:
            out = Path(args.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "gpu_epoch_time.md").write_text(table, encoding="utf-8")
            payload = {"versions": info, "args": vars(args), "results": results}
            (out / "gpu_epoch_time.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
        return table

    for i, (head, cudnn) in enumerate(variants + extras):
        elapsed = time.perf_counter() - start
        if i >= len(variants):
            last = max((r.get("fit_s", 0.0) for r in results), default=0.0)
            if elapsed + last > args.deadline:
                print(
                    f"skipping extra variant {head} (no cuDNN): "
                    f"{elapsed:.0f}s elapsed + ~{last:.0f}s > deadline"
                )
                continue
        print(f"== head={head} cudnn_allowed={cudnn} (t={elapsed:.0f}s)", flush=True)
        try:
            r = run_variant(head, cudnn, x_train, x_val, args, params)
        except Exception as exc:
            traceback.print_exc()
            r = {"head": head, "cudnn_allowed": cudnn, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            if cudnn and BACKEND == "jax":
                # A cuDNN lowering failure would surface at compile time, past Keras' fallback:
                # retry on the scan path.
                print(f"   retrying {head} with cuDNN disabled", flush=True)
                try:
                    results.append(r)
                    r = run_variant(head, False, x_train, x_val, args, params)
                except Exception as exc2:
                    traceback.print_exc()
                    r = {
                        "head": head,
                        "cudnn_allowed": False,
                        "error": f"{type(exc2).__name__}: {str(exc2)[:200]}",
                    }
        print("   ", json.dumps({k: v for k, v in r.items() if k != "epochs"}), flush=True)
        results.append(r)
        save()

    table = save()
    print(f"\ntotal {time.perf_counter() - start:.0f}s\n")
    print(table)
    return 0 if results and all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
