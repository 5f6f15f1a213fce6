"""Restore images of any size in overlapping tiles, so the model's memory stays bounded.

The restorer keeps one feature vector per pixel through its sweeps: about 1.7 KB a pixel, so a
1024x1024 photo needs 1.7 GiB at once and a 4096x4096 one 28 GiB. Cut into tiles, the model
only ever holds ``pixels_per_call`` pixels, whatever the image's size.

A tile is not the whole image: its sweeps see only the tile's rows and columns, while the whole
image's sweeps let every pixel see every other. Each tile is therefore cut larger than the part
of it that is kept, by ``margin`` pixels on every side that is not the image's border. The
restorer learnt from 32x32 images, but its LSTMs still carry some state further: on a restorer
trained briefly on denoising, a noisy 512x512 photo in tiles of 384 with margins of 48 came out
within 0.010 of the whole image's result (3 of 255 levels, at 0.01% of the pixels; 5 levels with
margins of 32, 12 with 16), with the same error against the clean photo to 6 digits
(docs/model.md). tests/serving/test_tiles.py checks the stitching exactly and the closeness on
a small model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

TILE = 384  # the longest side of a tile, its margins included
MARGIN = 48  # the context read around each tile's kept part: 1.5 CIFAR-10 images
PIXELS_PER_CALL = 2**18  # about 0.45 GiB of the restorer's activations: one 512x512 image at once

RowsPredictor = Callable[[np.ndarray], np.ndarray]  # (k, height, width * 3) rows -> the same shape


@dataclass(frozen=True)
class Span:
    """Along one axis: the tile reads [start, start + size) and keeps [keep_start, keep_stop)."""

    start: int
    keep_start: int
    keep_stop: int


def spans(length: int, tile: int = TILE, margin: int = MARGIN) -> tuple[int, list[Span]]:
    """The tile size along an axis of ``length`` pixels and its tiles: equal sizes, so tiles batch
    together; every kept part has ``margin`` pixels of context on each side or the border; the
    kept parts cover the axis once. One tile, the whole axis, when it fits in ``tile``."""
    if tile <= 2 * margin:
        raise ValueError(f"a tile ({tile}) must be longer than twice its margin ({margin})")
    if length <= tile:
        return length, [Span(0, 0, length)]
    inner = length - 2 * margin
    count = math.ceil(inner / (tile - 2 * margin))
    size = math.ceil(inner / count) + 2 * margin
    cuts = [0, *(margin + i * inner // count for i in range(1, count)), length]
    return size, [
        Span(min(max(cut - margin, 0), length - size), cut, following)
        for cut, following in itertools.pairwise(cuts)
    ]


def restore_tiled(
    predict_rows: RowsPredictor,
    images: np.ndarray,
    tile: int = TILE,
    margin: int = MARGIN,
    pixels_per_call: int = PIXELS_PER_CALL,
) -> np.ndarray:
    """``images`` (N, H, W, 3) float32 through a model of any size, tile by tile: calls of at most
    ``pixels_per_call`` pixels (one tile at least), each tile's kept part written into the result.
    Images that fit in one tile go whole, several to a call, exactly as the model alone does."""
    n, height, width, channels = images.shape
    tile_h, rows = spans(height, tile, margin)
    tile_w, columns = spans(width, tile, margin)
    windows = [(i, r, c) for i in range(n) for r in rows for c in columns]
    per_call = max(1, pixels_per_call // (tile_h * tile_w))
    restored = np.empty_like(images, dtype=np.float32)
    for chunk in _chunks(windows, per_call):
        batch = np.stack([images[i, _read(r, tile_h), _read(c, tile_w)] for i, r, c in chunk])
        out = predict_rows(batch.reshape(len(chunk), tile_h, tile_w * channels))
        for (i, r, c), tile_out in zip(chunk, np.asarray(out, dtype=np.float32).reshape(batch.shape)):
            restored[i, r.keep_start : r.keep_stop, c.keep_start : c.keep_stop] = tile_out[_kept(r), _kept(c)]
    return restored


def _read(span: Span, size: int) -> slice:
    """The pixels a tile reads along one axis."""
    return slice(span.start, span.start + size)


def _kept(span: Span) -> slice:
    """The kept part of a span, counted from the tile's own start."""
    return slice(span.keep_start - span.start, span.keep_stop - span.start)


def _chunks(items: list, size: int) -> Iterator[list]:
    for begin in range(0, len(items), size):
        yield items[begin : begin + size]
