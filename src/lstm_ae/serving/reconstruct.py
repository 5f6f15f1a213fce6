"""reconstruct: run a trained model on your own images, write original/reconstruction PNGs and
errors.csv sorted worst first (the per-image MSE is an anomaly score: unusual images
reconstruct worst).

The autoencoder sees every image at 32x32, its only size; a restorer (model.family restorer)
takes any size, so each image is restored at its own, one model call per size.
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

from lstm_ae import tracking
from lstm_ae.atomic import atomic_path, write_text
from lstm_ae.errors import UserError
from lstm_ae.metrics import psnr_from_mse
from lstm_ae.serving import inference

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".jpg", ".jpeg")


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


def load_reconstructor(model: str) -> Reconstructor:
    """A local .keras file (safe mode) or an MLflow model URI (models:/name@alias, runs:/...)."""
    if "://" in model or model.startswith(("models:/", "runs:/")):
        import mlflow

        tracking.use_project_store()
        try:
            served = mlflow.pyfunc.load_model(model)
        except mlflow.exceptions.MlflowException as exc:
            raise ReconstructError(f"{model}: cannot load ({str(exc).splitlines()[0]})") from None

        def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = served.predict(images)
            return np.asarray(out["reconstruction"]), np.asarray(out["mse"])

        # The Keras model inside says which size it takes (ReconstructionModel.load_context).
        return Reconstructor(inference.input_size(served.unwrap_python_model().model), predict)
    from lstm_ae.model.saved import load_model

    keras_model = load_model(Path(model))
    return Reconstructor(
        inference.input_size(keras_model), lambda images: inference.reconstruct(keras_model, images)
    )


def run(inputs: list[Path], model: str, out: Path, progress: bool = True) -> list[dict]:
    """Reconstruct every image, at the model's size or, for a restorer, at its own; write
    <out>/<name>.png side by side and <out>/errors.csv."""
    files = image_files(inputs)
    reconstructor = load_reconstructor(model)
    loaded = [
        load_image(path, reconstructor.size)
        for path in tqdm(files, desc="reading", unit="image", disable=not progress)
    ]
    recon, mse = inference.reconstruct_by_size(reconstructor.reconstruct, [image for image, _ in loaded])
    rows = []
    for path, name, (image, size), restored, error, psnr in zip(
        files, figure_names(files), loaded, recon, mse, psnr_from_mse(mse, 1.0)
    ):
        height, width = image.shape[:2]
        picture = inference.side_by_side(image / 255.0, restored, scale=inference.figure_scale(height, width))
        with atomic_path(out / name) as tmp:
            Image.fromarray(picture).save(tmp)
        rows.append(
            {
                "file": str(path),
                "mse": float(error),
                "psnr": float(psnr),
                "original_size": f"{size[0]}x{size[1]}",
                "model_size": f"{width}x{height}",  # what the model saw: 32x32 for the autoencoder
                "figure": name,
            }
        )
    rows.sort(key=lambda row: row["mse"], reverse=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, ["rank", "file", "mse", "psnr", "original_size", "model_size", "figure"], lineterminator="\n"
    )
    writer.writeheader()
    for rank, row in enumerate(rows, start=1):
        writer.writerow({"rank": rank, **row, "mse": f"{row['mse']:.6g}", "psnr": f"{row['psnr']:.2f}"})
    write_text(out / "errors.csv", buffer.getvalue())
    log.info(
        "%d image(s): worst %s (MSE %.5f) -> %s",
        len(rows),
        rows[0]["file"],
        rows[0]["mse"],
        out / "errors.csv",
    )
    return rows
