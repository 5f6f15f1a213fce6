"""Matplotlib figures for EDA and evaluation, returned to the caller (stages decide where they go)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lstm_ae.data.statistics import unit_chunks

# Figure objects built directly need no pyplot state and no display backend; savefig picks Agg.
CHANNELS = ("R", "G", "B")
CHANNEL_COLORS = ("tab:red", "tab:green", "tab:blue")
CELL_INCHES = 1.1


def _show(ax: Axes, image: np.ndarray, title: str | None = None) -> None:
    """Draw one HWC image without ticks; floats are clipped so imshow never warns about range."""
    image = np.asarray(image)
    ax.imshow(image if image.dtype == np.uint8 else np.clip(image, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)


def _image_grid(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    """A figure with an (n_rows, n_cols) array of image axes, each cell about an inch square."""
    fig = Figure(figsize=(n_cols * CELL_INCHES + 1.0, n_rows * CELL_INCHES + 0.3), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def sample_grid(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], per_class: int = 5
) -> Figure:
    """The first ``per_class`` images of every class, one row per class, so a reader sees the data."""
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
    fig, axes = _image_grid(len(class_names), per_class)
    for row, name in enumerate(class_names):
        picks = np.flatnonzero(labels == row)[:per_class]
        for col, ax in enumerate(axes[row]):
            if col < len(picks):
                _show(ax, images[picks[col]])
            else:
                ax.set_axis_off()
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"First {per_class} images per class")
    return fig


def pixel_histogram(images: np.ndarray, bins: int = 64) -> Figure:
    """Distribution of pixel intensities per channel and overall, accumulated chunk by chunk."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.zeros((3, bins))
    for chunk in unit_chunks(images):
        pixels = chunk.reshape(-1, 3)
        for c in range(3):
            counts[c] += np.histogram(pixels[:, c], bins=edges)[0]
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    centers = (edges[:-1] + edges[1:]) / 2
    for c, (name, color) in enumerate(zip(CHANNELS, CHANNEL_COLORS, strict=True)):
        ax.plot(centers, counts[c] / counts[c].sum(), color=color, label=name)
    total = counts.sum(axis=0)
    ax.plot(centers, total / total.sum(), color="black", linestyle="--", label="all")
    ax.set(xlabel="pixel intensity", ylabel="fraction of pixels", title="Pixel intensity histogram")
    ax.legend()
    return fig


def channel_correlation(corr: np.ndarray) -> Figure:
    """Heat map of the 3x3 channel correlation, with each value written in its cell."""
    corr = np.asarray(corr)
    if corr.shape != (3, 3):
        raise ValueError(f"expected a 3x3 correlation matrix, got shape {corr.shape}")
    fig = Figure(figsize=(4.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    mesh = ax.imshow(corr, cmap="coolwarm", vmin=-1.0, vmax=1.0)
    for i in range(3):
        for j in range(3):
            color = "white" if abs(corr[i, j]) > 0.6 else "black"
            ax.text(j, i, f"{corr[i, j]:.3f}", ha="center", va="center", color=color)
    ax.set_xticks(range(3), CHANNELS)
    ax.set_yticks(range(3), CHANNELS)
    ax.set_title("Pearson correlation of channels")
    fig.colorbar(mesh, ax=ax)
    return fig


def channel_scatter_matrix(pixels: np.ndarray) -> Figure:
    """Pairwise scatter of R, G, B values of sampled pixels, with each channel's histogram on the diagonal."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != 3:
        raise ValueError(f"expected pixels of shape (M, 3), got {pixels.shape}")
    pixels = np.concatenate(list(unit_chunks(pixels)))
    fig = Figure(figsize=(7, 7), layout="constrained")
    axes = fig.subplots(3, 3, sharex=True)
    for i in range(3):
        for j in range(3):
            ax = axes[i, j]
            if i == j:
                ax.hist(pixels[:, i], bins=50, range=(0, 1), color=CHANNEL_COLORS[i])
            else:
                # Rasterized so a few thousand points do not bloat vector outputs.
                ax.scatter(pixels[:, j], pixels[:, i], s=2, alpha=0.1, color="black", rasterized=True)
                ax.set_ylim(0, 1)
            ax.set_xlim(0, 1)
            if i == 2:
                ax.set_xlabel(CHANNELS[j])
            if j == 0:
                ax.set_ylabel(CHANNELS[i])
    fig.suptitle(f"Channel scatter matrix ({len(pixels)} pixels)")
    return fig


def reconstructions(
    originals: np.ndarray,
    recons: np.ndarray,
    *,
    extra: Sequence[np.ndarray] = (),
    titles: Sequence[str] | None = None,
    rows: Sequence[str] = ("original", "reconstruction"),
) -> Figure:
    """Images side by side, one row per version (e.g. clean / corrupted / restored), one column each."""
    image_rows = [originals, recons, *extra]
    if len(rows) != len(image_rows):
        raise ValueError(f"need one row label per image row: {len(image_rows)} rows, got {len(rows)} labels")
    n_cols = len(originals)
    if any(len(r) != n_cols for r in image_rows):
        raise ValueError(f"every row needs {n_cols} images, got {[len(r) for r in image_rows]}")
    if titles is not None and len(titles) != n_cols:
        raise ValueError(f"need one title per column ({n_cols}), got {len(titles)}")
    fig, axes = _image_grid(len(image_rows), n_cols)
    for r, (label, images) in enumerate(zip(rows, image_rows, strict=True)):
        for c in range(n_cols):
            _show(axes[r, c], images[c], titles[c] if titles is not None and r == 0 else None)
        axes[r, 0].set_ylabel(label, fontsize=9)
    return fig


def best_worst(images: np.ndarray, recons: np.ndarray, errors: np.ndarray, k: int = 5) -> Figure:
    """The ``k`` best and ``k`` worst reconstructed images, to show what the model gets right and wrong."""
    errors = np.asarray(errors).reshape(-1)
    if not len(images) == len(recons) == len(errors):
        raise ValueError(f"lengths differ: {len(images)} images, {len(recons)} recons, {len(errors)} errors")
    if not 1 <= k <= len(errors):
        raise ValueError(f"k must be in [1, {len(errors)}], got k={k}")
    order = np.argsort(errors, kind="stable")
    fig, axes = _image_grid(4, k)
    for band, (name, picks) in enumerate((("best", order[:k]), ("worst", order[::-1][:k]))):
        for c, index in enumerate(picks):
            _show(axes[2 * band, c], images[index], f"MSE {errors[index]:.3g}")
            _show(axes[2 * band + 1, c], recons[index])
        axes[2 * band, 0].set_ylabel(f"{name}\noriginal", fontsize=9)
        axes[2 * band + 1, 0].set_ylabel(f"{name}\nreconstruction", fontsize=9)
    return fig


def loss_curves(history: Mapping[str, Sequence[float]]) -> Figure:
    """Training and validation loss per epoch on a log scale, marking the epoch with the best val loss."""
    if "loss" not in history:
        raise ValueError(f"history needs a 'loss' key, got keys {sorted(history)}")
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    for key in ("loss", "val_loss"):
        if key in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], marker=".", label=key)
    if len(history.get("val_loss", ())):
        best = int(np.argmin(history["val_loss"]))
        best_value = history["val_loss"][best]
        ax.axvline(best + 1, color="gray", linestyle=":")
        label = f"best val (epoch {best + 1}: {best_value:.4g})"
        ax.plot(best + 1, best_value, "r*", markersize=12, label=label)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="loss", title="Training history")
    ax.legend()
    return fig
