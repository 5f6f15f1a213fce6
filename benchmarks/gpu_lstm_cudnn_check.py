#!/usr/bin/env python3
"""Does Keras' cuDNN LSTM path on JAX compute the same thing as its lax.scan path?

Companion to gpu_epoch_time.py (which found the cuDNN runs' loss stuck near 1/12 while the
scan run's fell). With identical weights and inputs, compares forward outputs and the gradients
of an MSE loss, cuDNN allowed vs forced fallback, for one LSTM layer and for the dense-head model.
Then trains one LSTM layer to copy a fixed target for a few Adam steps both ways.

With --fd: only the dense-head model, at jax_default_matmul_precision=highest (no TF32 anywhere),
plus a central finite difference of the loss along d = g_cudnn - g_scan to tell which gradient
is right.

Usage (repository root): KERAS_BACKEND=jax PYTHONPATH=src python benchmarks/gpu_lstm_cudnn_check.py [--fd]
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_epoch_time as bench  # noqa: E402  (installs the backend.lstm probe, adds src to sys.path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from lstm_ae.config import ModelConfig  # noqa: E402
from lstm_ae.model import build_autoencoder  # noqa: E402


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-30))


def compare(model, x, label: str) -> dict:
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]

    def loss_fn(tv, ntv, x):
        y, _ = model.stateless_call(tv, ntv, x, training=True)
        return jnp.mean((y - x[..., : y.shape[-1]]) ** 2) if y.ndim == 3 else jnp.mean(y**2), y

    out = {}
    for cudnn in (True, False):
        bench._FORCE_NO_CUDNN = not cudnn
        bench._PROBE.clear()
        fn = jax.jit(jax.value_and_grad(lambda tv, ntv, x: loss_fn(tv, ntv, x), has_aux=True))
        (loss, y), grads = fn(tv, ntv, x)
        out[cudnn] = (float(loss), np.asarray(y), [np.asarray(g) for g in grads], dict(bench._PROBE))
    bench._FORCE_NO_CUDNN = False
    (lc, yc, gc, pc), (ls, ys, gs, _) = out[True], out[False]
    res = {
        "case": label,
        "lstm_paths_when_allowed": {str(k): v for k, v in pc.items()},
        "loss_cudnn": lc,
        "loss_scan": ls,
        "forward_rel_max_diff": _rel(yc, ys),
        "grad_rel_max_diff": {v.path: _rel(a, b) for v, a, b in zip(model.trainable_variables, gc, gs)},
        "grad_norm_cudnn": {v.path: float(np.linalg.norm(a)) for v, a in zip(model.trainable_variables, gc)},
        "grad_norm_scan": {v.path: float(np.linalg.norm(b)) for v, b in zip(model.trainable_variables, gs)},
    }
    print(json.dumps(res, indent=1), flush=True)
    return res


def train_copy(cudnn: bool, steps: int = 200) -> list[float]:
    """Fit one LSTM(64) layer + Dense to reproduce its input for a few steps; return the losses."""
    bench._FORCE_NO_CUDNN = not cudnn
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 8))
    h = keras.layers.LSTM(64, return_sequences=True)(inp)
    out = keras.layers.Dense(8)(h)
    m = keras.Model(inp, out)
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = np.random.default_rng(0).standard_normal((512, 16, 8)).astype(np.float32)
    hist = m.fit(x, x, batch_size=64, epochs=steps // 8, verbose=0, shuffle=False)
    bench._FORCE_NO_CUDNN = False
    return [round(v, 5) for v in hist.history["loss"][:: max(1, len(hist.history["loss"]) // 6)]] + [
        round(hist.history["loss"][-1], 5)
    ]


def _gradients(model, x, cudnn: bool):
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]

    def loss(tv):
        y, _ = model.stateless_call(tv, ntv, x, training=True)
        return jnp.mean((y - x) ** 2)

    bench._FORCE_NO_CUDNN = not cudnn
    value, grads = jax.jit(jax.value_and_grad(loss))(tv)
    bench._FORCE_NO_CUDNN = False
    return tv, float(value), grads


def fd_check(model, x) -> dict:
    """At 'highest' matmul precision: cuDNN vs scan gradients, and a central finite difference of the
    (scan, full-fp32) loss along d = g_cudnn - g_scan, which tells which gradient is right."""
    tv, lc, gc = _gradients(model, x, True)
    _, ls, gs = _gradients(model, x, False)
    d = [a - b for a, b in zip(gc, gs)]
    norm = float(jnp.sqrt(sum(jnp.sum(t**2) for t in d)))
    direction = "g_cudnn - g_scan"
    if norm == 0.0:  # identical gradients (e.g. on CPU): check along the gradient itself
        d, direction = list(gs), "g_scan (the gradients are identical)"
        dnorm = float(jnp.sqrt(sum(jnp.sum(t**2) for t in d)))
    else:
        dnorm = norm
    d = [t / dnorm for t in d]
    ntv = [v.value for v in model.non_trainable_variables]
    bench._FORCE_NO_CUDNN = True

    @jax.jit
    def loss_at(step):
        y, _ = model.stateless_call([w + step * t for w, t in zip(tv, d)], ntv, x, training=True)
        return jnp.mean((y - x) ** 2)

    fd = {}
    for eps in (1e-1, 3e-2, 1e-2):
        fd[str(eps)] = float((loss_at(eps) - loss_at(-eps)) / (2 * eps))
    bench._FORCE_NO_CUDNN = False
    dot = lambda g: float(sum(jnp.vdot(a, b) for a, b in zip(g, d)))  # noqa: E731
    res = {
        "case": "autoencoder dense head, jax_default_matmul_precision=highest",
        "loss_cudnn": lc,
        "loss_scan": ls,
        "grad_rel_max_diff": {v.path: _rel(a, b) for v, a, b in zip(model.trainable_variables, gc, gs)},
        "norm_g_cudnn_minus_g_scan": norm,
        "d": direction,
        "directional_derivative_along_d": {"g_cudnn": dot(gc), "g_scan": dot(gs), "finite_difference": fd},
    }
    print(json.dumps(res, indent=1), flush=True)
    return res


def main() -> int:
    print("jax", jax.__version__, "keras", keras.__version__, jax.devices(), flush=True)
    if "--fd" in sys.argv:
        jax.config.update("jax_default_matmul_precision", "highest")
        rng = np.random.default_rng(1)
        keras.utils.set_random_seed(0)
        model = build_autoencoder(ModelConfig(encoder_widths=(512, 256), decoder_widths=(256,), head="dense"))
        x = jnp.asarray(rng.random((128, 32, 96), dtype=np.float32))
        res = fd_check(model, x)
        if os.environ.get("OUT"):
            Path(os.environ["OUT"], "cudnn_fd_check.json").write_text(
                json.dumps(res, indent=1), encoding="utf-8"
            )
        return 0
    results = []
    rng = np.random.default_rng(1)

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 96))
    layer = keras.layers.LSTM(512, return_sequences=True)
    single = keras.Model(inp, keras.layers.Dense(96)(layer(inp)))
    results.append(
        compare(single, jnp.asarray(rng.random((128, 32, 96), dtype=np.float32)), "LSTM(512)+Dense")
    )

    keras.utils.set_random_seed(0)
    model = build_autoencoder(ModelConfig(encoder_widths=(512, 256), decoder_widths=(256,), head="dense"))
    results.append(
        compare(model, jnp.asarray(rng.random((128, 32, 96), dtype=np.float32)), "autoencoder dense head")
    )

    copy = {"cudnn": train_copy(True), "scan": train_copy(False)}
    print("copy-task losses:", json.dumps(copy), flush=True)
    results.append({"case": "copy task LSTM(64)+Dense, Adam 1e-2, loss every ~4 epochs", **copy})

    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "cudnn_check.json").write_text(
            json.dumps(results, indent=1), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
