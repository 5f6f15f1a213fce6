"""reconstruct: run a trained model on your own images, write original/reconstruction PNGs, each
reconstruction alone as a PNG to keep, and errors.csv sorted worst first (the per-image MSE is
an anomaly score: unusual images reconstruct worst).

The autoencoder sees every image at 32x32, its only size; a restorer (model.family restorer)
takes any size, so each image is restored at its own, one batch per size. Images go through in
batches of bounded pixels and large photos in tiles, so memory does not grow with the folder or
the photo (docs/model.md has the measurements).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from lstm_ae.atomic import atomic_path, write_text
from lstm_ae.errors import UserError
from lstm_ae.metrics import psnr_from_mse
from lstm_ae.serving import inference
from lstm_ae.tracking import store

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".jpg", ".jpeg")
RESTORED = "restored"  # the subfolder of the reconstructions alone, named like their figures


class ReconstructError(UserError, ValueError):
    """No usable images, or a file that cannot be read; the message names it."""


@dataclass(frozen=True)
class Reconstructor:
    """A loaded model: the (height, width) it takes (None: any size) and its batch call."""

    size: inference.Size
    reconstruct: inference.BatchReconstructor


def image_files(inputs: list[Path]) -> list[Path]:
    """The given files, and the PNG/JPEG files directly inside given folders, in name order."""
    files = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise ReconstructError(f"{path}: no such file or folder")
    if not files:
        raise ReconstructError(f"no PNG or JPEG images in {', '.join(map(str, inputs))}")
    return files


def figure_names(files: list[Path]) -> list[str]:
    """<stem>.png for each file; a stem shared by several files gets the file's position too."""
    stems = [path.stem for path in files]
    return [f"{stem}.png" if stems.count(stem) == 1 else f"{stem}-{i}.png" for i, stem in enumerate(stems)]


def load_image(
    path: Path, size: inference.Size = inference.AUTOENCODER_SIZE
) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB uint8 (H, W, 3) and the original (width, height); resized to ``size`` (H, W) if the
    model takes only that size, kept as it is if ``size`` is None."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ReconstructError(f"{path}: not a readable PNG or JPEG image ({exc})") from None
    original = rgb.size
    if size is not None and original != size[::-1]:
        log.info(
            "%s: %dx%d, resized to %dx%d (the autoencoder's input size; a restorer takes any size)",
            path,
            *original,
            *size[::-1],
        )
        rgb = rgb.resize(size[::-1], Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8), original


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding its pixels."""
    try:
        with Image.open(path) as image:
            return image.size[::-1]
    except (UnidentifiedImageError, OSError) as exc:
        raise ReconstructError(f"{path}: not a readable PNG or JPEG image ({exc})") from None


def batches(sizes: list[tuple[int, int]], max_pixels: int = inference.MAX_BATCH_PIXELS) -> list[list[int]]:
    """Indices of images to reconstruct together: one size per batch (a batch is one array), at
    most ``max_pixels`` pixels each (one image at least), so a folder of photos is never held at
    once. Sizes in order of first appearance, each size's images in their own order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(size, []).append(i)
    result = []
    for (height, width), indices in groups.items():
        per_batch = max(1, max_pixels // (height * width))
        result += [indices[begin : begin + per_batch] for begin in range(0, len(indices), per_batch)]
    return result


def load_reconstructor(model: str) -> Reconstructor:
    """A local .keras file (safe mode) or an MLflow model URI (models:/name@alias, runs:/...).

    Of an MLflow model, the Keras model inside is used (ReconstructionModel.load_context loaded
    it): its predict refuses batches over a served request's limit, and this command bounds its
    memory itself (batches here, tiles in inference.reconstruct).
    """
    if "://" in model or model.startswith(("models:/", "runs:/")):
        import mlflow

        store.use_project_store()
        try:
            keras_model = mlflow.pyfunc.load_model(model).unwrap_python_model().model
        except mlflow.exceptions.MlflowException as exc:
            raise ReconstructError(f"{model}: cannot load ({str(exc).splitlines()[0]})") from None
    else:
        from lstm_ae.model.saved import load_model

        keras_model = load_model(Path(model))
    return Reconstructor(
        inference.input_size(keras_model), lambda images: inference.reconstruct(keras_model, images)
    )


def save_png(path: Path, pixels: np.ndarray) -> None:
    """``pixels`` (H, W, 3) uint8 as a PNG at ``path``, whole or not at all."""
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def write_outputs(out: Path, name: str, image: np.ndarray, restored: np.ndarray) -> None:
    """<out>/<name>: the image beside its reconstruction, small images enlarged; and
    <out>/restored/<name>: the reconstruction alone, at the size the model produced it."""
    scale = inference.figure_scale(*image.shape[:2])
    save_png(out / name, inference.side_by_side(image, restored, scale))
    save_png(out / RESTORED / name, inference.to_uint8(restored))


def run(inputs: list[Path], model: str, out: Path, progress: bool = True) -> list[dict]:
    """Reconstruct every image, at the model's size or, for a restorer, at its own; write
    <out>/<name>.png side by side, <out>/restored/<name>.png and <out>/errors.csv."""
    files = image_files(inputs)
    reconstructor = load_reconstructor(model)
    names = figure_names(files)
    headers = [image_size(path) for path in files]  # every file readable before any output is written
    sizes = [reconstructor.size or header for header in headers]
    rows = []
    with tqdm(total=len(files), desc="reconstructing", unit="image", disable=not progress) as bar:
        for batch in batches(sizes):
            loaded = [load_image(files[i], reconstructor.size) for i in batch]
            recon, mse = reconstructor.reconstruct(np.stack([image for image, _ in loaded]))
            for i, (image, original), restored, error in zip(batch, loaded, recon, mse):
                write_outputs(out, names[i], image, restored)
                rows.append(error_row(files[i], names[i], original, image.shape[:2], float(error)))
            bar.update(len(batch))
    write_errors(out / "errors.csv", rows)
    return rows


def error_row(path: Path, name: str, original: tuple[int, int], seen: tuple[int, int], mse: float) -> dict:
    """One line of errors.csv: sizes as width x height, ``original`` (width, height) as PIL gives
    it, ``seen`` (height, width) as the model's array had it (32x32 for the autoencoder)."""
    return {
        "file": str(path),
        "mse": mse,
        "psnr": float(psnr_from_mse(np.array([mse]), 1.0)[0]),
        "original_size": f"{original[0]}x{original[1]}",
        "model_size": f"{seen[1]}x{seen[0]}",
        "figure": name,
    }


def write_errors(path: Path, rows: list[dict]) -> None:
    """errors.csv, worst first, with its rank; sorts ``rows`` in place."""
    rows.sort(key=lambda row: row["mse"], reverse=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, ["rank", "file", "mse", "psnr", "original_size", "model_size", "figure"], lineterminator="\n"
    )
    writer.writeheader()
    for rank, row in enumerate(rows, start=1):
        writer.writerow({"rank": rank, **row, "mse": f"{row['mse']:.6g}", "psnr": f"{row['psnr']:.2f}"})
    write_text(path, buffer.getvalue())
    log.info("%d image(s): worst %s (MSE %.5f) -> %s", len(rows), rows[0]["file"], rows[0]["mse"], path)
