"""Reconstruct a batch of images and score each one: what the served model, the reconstruct
command and evaluation share. Pure: arrays in, arrays out.

Pixel scale is decided by dtype, which survives JSON (integers vs decimals): integer pixels
are 0-255 values, floating-point pixels are already in [0, 1].

The autoencoder takes 32x32 images only; the restorer takes any size, one size per batch. Both
read an image as its rows, (N, height, width * 3), so the size a model takes is read from its
Keras input: (None, 32, 96) for the autoencoder, (None, None, None) for the restorer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lstm_ae.errors import UserError
from lstm_ae.metrics import mse_per_image
from lstm_ae.serving.tiles import restore_tiled

CHANNELS = 3
AUTOENCODER_SIZE = (32, 32)
# The most pixels one served request may hold: one 1024x1024 photo, or 1,024 CIFAR-10 images. The
# request's JSON is then about 12 MB (integer pixels) and the answer's about 60 MB (17-digit floats);
# a server holds each several times over while MLflow parses and writes them.
MAX_BATCH_PIXELS = 2**20

Size = tuple[int, int] | None  # (height, width) a model takes; None: any size
BatchReconstructor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # images -> (recon, mse)


class ImageInputError(UserError, ValueError):
    """Images of the wrong shape or range; the message says what is expected."""


def input_size(model) -> Size:
    """(height, width) of the images a Keras model's (batch, height, width * 3) input takes, or
    None when it takes any size (the restorer)."""
    _, height, features = model.input_shape
    return None if height is None or features is None else (height, features // CHANNELS)


def claimed_shape(images: object) -> tuple[int, ...]:
    """The shape ``images`` has, read without converting them: an array's own, or for nested lists
    the length at each depth along the first elements (ragged lists fail later, in np.asarray)."""
    shape = getattr(images, "shape", None)
    if shape is not None:
        return tuple(shape)
    lengths = []
    while isinstance(images, list | tuple):
        lengths.append(len(images))
        if not images:
            break
        images = images[0]
    return tuple(lengths)


def check_batch_pixels(images: object, limit: int = MAX_BATCH_PIXELS) -> None:
    """Refuse a batch of more than ``limit`` pixels (values / 3) from its shape alone, before it is
    converted to floats or reaches the model."""
    shape = claimed_shape(images)
    pixels = math.ceil(math.prod(shape) / CHANNELS)
    if pixels > limit:
        raise ImageInputError(
            f"a request may hold at most {limit:,} pixels (e.g. one 1024x1024 image or 1,024 of 32x32), "
            f"got {pixels:,} in shape {shape}; send fewer or smaller images per request"
        )


def to_unit_images(images: object, size: Size = AUTOENCODER_SIZE) -> np.ndarray:
    """A batch (N, H, W, 3), or one image (H, W, 3), as float32 in [0, 1]; ``size`` is the
    (H, W) the model needs, None for any (one size for the whole batch)."""
    return _unit_scale(_image_batch(images, size))


def _image_batch(images: object, size: Size) -> np.ndarray:
    """The images as one (N, H, W, 3) array, or an error that says which shape was expected."""
    try:
        array = np.asarray(images)
    except ValueError:  # nested lists of unequal lengths, e.g. JSON images of several sizes
        raise ImageInputError(
            "images of one batch must share one size (N, H, W, 3); send each size in its own request"
        ) from None
    batch = array[np.newaxis] if array.ndim == 3 and array.shape[-1] == CHANNELS else array
    if batch.ndim != 4 or batch.shape[-1] != CHANNELS or 0 in batch.shape:
        expected = (
            "(N, H, W, 3) (RGB, H and W at least 1)" if size is None else f"(N, {size[0]}, {size[1]}, 3)"
        )
        raise ImageInputError(f"expected images of shape {expected}, got {array.shape}")
    if size is not None and batch.shape[1:3] != size:
        raise ImageInputError(
            f"expected images of shape (N, {size[0]}, {size[1]}, 3), the autoencoder's size, "
            f"got {array.shape}; resize them to {size[1]}x{size[0]}, "
            "or use a restorer (model.family restorer), which takes any size"
        )
    return batch


def _unit_scale(array: np.ndarray) -> np.ndarray:
    """Integers 0-255 (or booleans) divided by 255, floats in [0, 1] kept; anything else refused."""
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        if array.min() < 0 or array.max() > 255:
            raise ImageInputError(f"integer pixels must be 0-255, got {array.min()}..{array.max()}")
        return array.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise ImageInputError(f"pixels must be integers 0-255 or floats in [0, 1], got dtype {array.dtype}")
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ImageInputError(
            f"float pixels must be finite and in [0, 1], got {bad:,} NaN or infinite value(s)"
        )
    if array.min() < 0 or array.max() > 1:
        raise ImageInputError(
            f"float pixels must be finite and in [0, 1], got {array.min():.4g}..{array.max():.4g}; "
            "divide 0-255 values by 255 or send them as integers"
        )
    return array.astype(np.float32, copy=False)


def code_layer(model):
    """The layer whose output is the model's code, or None when it has none (the restorer).

    The sweep autoencoder names it ``code``; in the report's autoencoder it is the last encoder
    LSTM (``encoder_lstm_N``), whose final state is all the decoder reads.
    """
    names = [layer.name for layer in model.layers]
    if "code" in names:
        return model.get_layer("code")
    encoders = [name for name in names if name.startswith("encoder_lstm_")]
    return model.get_layer(max(encoders, key=lambda name: int(name.rsplit("_", 1)[1]))) if encoders else None


def encode(model, images: object, batch_size: int = 256) -> np.ndarray:
    """The code of each image, (N, code size) float32: the floats the decoder rebuilds the image
    from, to store, compare or search. Same input rules as :func:`reconstruct`; a model without a
    code (the restorer) is refused."""
    import keras

    layer = code_layer(model)
    if layer is None:
        raise ImageInputError(f"model {model.name!r} keeps every pixel and has no code; use an autoencoder")
    unit = to_unit_images(images, input_size(model))
    rows = unit.reshape(len(unit), unit.shape[1], -1)
    encoder = keras.Model(model.inputs, layer.output)
    return np.asarray(encoder.predict(rows, batch_size=batch_size, verbose=0), dtype=np.float32)


def with_code(model):
    """``model`` with its code as a second output, so that one pass gives both (see
    :func:`reconstruct_with_code`); None when it has no code (the restorer)."""
    import keras

    layer = code_layer(model)
    return None if layer is None else keras.Model(model.inputs, [*model.outputs, layer.output])


def reconstruct_with_code(coded, images: object, batch_size: int = 256) -> tuple[np.ndarray, ...]:
    """:func:`reconstruct` and :func:`encode` in one pass of a :func:`with_code` model:
    (reconstructions, per-image MSE, codes), the images converted once and the encoder run once."""
    unit = to_unit_images(images, input_size(coded))
    rows = unit.reshape(len(unit), unit.shape[1], -1)
    recon, code = coded.predict(rows, batch_size=batch_size, verbose=0)
    recon = _as_images(recon, unit.shape)
    return recon, mse_per_image(unit, recon), np.asarray(code, dtype=np.float32)


def _as_images(recon, shape: tuple[int, ...]) -> np.ndarray:
    """A model's rows as float32 images of ``shape``, clipped to [0, 1] in place (a copy of a large
    photo is hundreds of MB)."""
    recon = np.asarray(recon, dtype=np.float32).reshape(shape)
    np.clip(recon, 0.0, 1.0, out=recon)
    return recon


def reconstruct(model, images: object, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(reconstructions (N, H, W, 3) float32 in [0, 1], per-image MSE (N,)) for any Keras-like
    model that maps (N, H, W * 3) rows to the same shape; H and W must be the model's own size
    (32x32 for the autoencoder) or, for a model that takes any size, the images' own.

    A model of any size (the restorer) sees images larger than a tile in overlapping tiles
    (serving/tiles.py), so its memory stays bounded however large the photo."""
    size = input_size(model)
    unit = to_unit_images(images, size)
    n, height, width, _ = unit.shape
    if size is None:
        recon = restore_tiled(lambda rows: model.predict(rows, batch_size=len(rows), verbose=0), unit)
    else:
        rows = unit.reshape(n, height, width * CHANNELS)  # the layout of data.sequences.to_sequences
        recon = model.predict(rows, batch_size=batch_size, verbose=0)
    recon = _as_images(recon, unit.shape)
    return recon, mse_per_image(unit, recon)


def figure_scale(height: int, width: int, target: int = 128) -> int:
    """How many times to enlarge an image so its longer side reaches about ``target`` pixels:
    4 for 32x32 (too small to judge at its own size), 1 for a photo of 128 pixels or more."""
    return max(1, target // max(height, width))


def side_by_side(original: np.ndarray, recon: np.ndarray, scale: int = 4, gap: int = 2) -> np.ndarray:
    """One uint8 picture: the original left, the reconstruction right (each uint8, or floats in
    [0, 1]), each enlarged ``scale`` times without smoothing, so every pixel stays a visible square."""
    halves = [to_uint8(x).repeat(scale, axis=0).repeat(scale, axis=1) for x in (original, recon)]
    spacer = np.full((halves[0].shape[0], gap * scale, 3), 255, dtype=np.uint8)
    return np.concatenate([halves[0], spacer, halves[1]], axis=1)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] pixels as the 0-255 integers a PNG holds, rounded to the nearest; uint8 kept as it
    is. One float32 copy, worked on in place: a 4096x4096 photo's copies are 200 MB each."""
    if image.dtype == np.uint8:
        return image
    scaled = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    scaled *= 255
    return np.rint(scaled, out=scaled).astype(np.uint8)
