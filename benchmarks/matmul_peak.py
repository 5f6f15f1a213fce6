"""How fast does this CPU multiply at the LSTMs' shapes? (docs/results.md: Why float32 cannot reach 2x)

The CPU's matrix-multiply ceiling in float32 and bfloat16, at the LSTM's own shapes and at a
large square one: what bounds the throughput of the report's model, and so whether it can train
twice the samples per second on this CPU (docs/results.md, Throughput of the report's model:
Why float32 cannot reach 2x, and On an AVX2-only CPU).

An LSTM step is one matrix product of (batch, inputs + units) by (inputs + units, 4 x units);
the report's first encoder LSTM has 96 inputs and 512 units, so at batch 128 that is
(128, 608) x (608, 2048). Comparing the model's training FLOP rate with these ceilings tells
whether a float32 trick (XLA, threads, unrolling) could still double samples per second, or
whether only cheaper arithmetic can. Run in the project root:

    python benchmarks/matmul_peak.py

Prints one JSON line per dtype and shape, in GFLOP/s (2 x m x k x n per product).
"""

from __future__ import annotations

import json
import time

SHAPES = ((128, 608, 2048), (512, 608, 2048), (1024, 608, 2048), (4096, 4096, 4096))
WORK_FLOP = 4e10  # products per measurement: enough for a few seconds at a few hundred GFLOP/s


def gflops(dtype: str, m: int, k: int, n: int) -> float:
    """GFLOP/s of a compiled tf.matmul of (m, k) by (k, n) in ``dtype``, after one warm-up call."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((m, k), seed=1), dtype)
    b = tf.cast(tf.random.normal((k, n), seed=2), dtype)
    product = tf.function(tf.matmul)
    product(a, b).numpy()
    repeats = max(3, int(WORK_FLOP / (2 * m * k * n)))
    started = time.perf_counter()
    for _ in range(repeats):
        result = product(a, b)
    result.numpy()  # wait for the last product
    return 2 * m * k * n * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    for dtype in ("float32", "bfloat16"):
        for m, k, n in SHAPES:
            print(
                json.dumps(
                    {"dtype": dtype, "shape": [m, k, n], "gflop_per_s": round(gflops(dtype, m, k, n), 1)}
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
