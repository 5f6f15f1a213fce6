"""Tiles: their layout covers every pixel once with its margin of context, the stitching is exact
for a model that looks no further than the margin, and a small restorer comes close to its
whole-image result."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lstm_ae.config import RestorerConfig
from lstm_ae.model.restorer import build_restorer
from lstm_ae.serving.tiles import MARGIN, TILE, restore_tiled, spans


@pytest.mark.parametrize("length", [1, 31, 64, 65, 100, 129, 383, 384, 385, 512, 1000, 4097])
@pytest.mark.parametrize(("tile", "margin"), [(TILE, MARGIN), (64, 16), (10, 4)])
def test_tiles_cover_each_pixel_once_with_its_margin(length: int, tile: int, margin: int) -> None:
    size, tiles = spans(length, tile, margin)
    assert size == min(length, tile) if len(tiles) == 1 else size <= tile
    assert [t.keep_start for t in tiles[1:]] == [t.keep_stop for t in tiles[:-1]]
    assert tiles[0].keep_start == 0 and tiles[-1].keep_stop == length
    for t in tiles:
        assert 0 <= t.start and t.start + size <= length and t.keep_start < t.keep_stop
        assert t.keep_start - t.start >= margin or t.start == 0
        assert t.start + size - t.keep_stop >= margin or t.start + size == length


def test_a_tile_must_be_longer_than_its_margins() -> None:
    with pytest.raises(ValueError, match=r"a tile \(32\) must be longer than twice its margin \(16\)"):
        spans(100, 32, 16)


def box_blur(rows: np.ndarray) -> np.ndarray:
    """A stand-in model that looks one pixel away: the mean of each pixel's 3x3 neighbourhood
    (edges repeated), so a tile with a margin of 1 or more gives the whole image's result."""
    pixels = rows.reshape(rows.shape[0], rows.shape[1], -1, 3)
    padded = np.pad(pixels, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = pixels.shape[1:3]
    total = sum(padded[:, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    return (total / 9).reshape(rows.shape)


def whole(predict, images: np.ndarray) -> np.ndarray:
    return predict(images.reshape(len(images), images.shape[1], -1)).reshape(images.shape)


def test_stitched_tiles_equal_the_whole_image_for_a_model_that_sees_no_further_than_the_margin() -> None:
    images = np.random.default_rng(0).random((2, 70, 45, 3), dtype=np.float32)
    calls = []

    def predict(rows: np.ndarray) -> np.ndarray:
        calls.append(rows.shape)
        return box_blur(rows)

    tiled = restore_tiled(predict, images, tile=16, margin=2, pixels_per_call=600)
    np.testing.assert_allclose(tiled, whole(box_blur, images), rtol=0, atol=1e-6)
    assert len({shape[1:] for shape in calls}) == 1  # every tile the same size, so they batch
    assert all(k * h * w / 3 <= 600 for k, h, w in calls)


def test_images_that_fit_in_a_tile_go_whole_several_to_a_call() -> None:
    images = np.random.default_rng(1).random((5, 32, 32, 3), dtype=np.float32)
    calls = []

    def predict(rows: np.ndarray) -> np.ndarray:
        calls.append(rows.shape)
        return box_blur(rows)

    tiled = restore_tiled(predict, images, pixels_per_call=2 * 1024)
    np.testing.assert_array_equal(tiled, whole(box_blur, images))
    assert calls == [(2, 32, 96), (2, 32, 96), (1, 32, 96)]


def test_a_restorer_in_tiles_comes_close_to_the_whole_image_and_closer_with_wider_margins() -> None:
    """A small restorer whose correction is made random (an untrained one returns its input, which
    any tiling reproduces): its sweeps see a whole row and column, so tiles are not exact, but
    what a pixel's features keep of pixels beyond the margin fades with their distance."""
    keras.utils.set_random_seed(0)
    model = build_restorer(RestorerConfig(features=4, units=4, blocks=1))
    correction = model.get_layer("correction")
    kernel, bias = correction.get_weights()
    correction.set_weights([np.random.default_rng(0).normal(0, 0.5, kernel.shape).astype("float32"), bias])
    images = np.random.default_rng(0).random((2, 100, 130, 3), dtype=np.float32)

    def predict(rows: np.ndarray) -> np.ndarray:
        return model.predict(rows, batch_size=len(rows), verbose=0)

    reference = whole(predict, images)
    assert np.abs(reference - images).mean() > 0.1  # the model changes the image a lot
    errors = [np.abs(restore_tiled(predict, images, tile=64, margin=m) - reference).max() for m in (4, 24)]
    assert errors[1] < 0.01 < errors[0]
