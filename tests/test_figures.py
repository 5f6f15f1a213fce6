"""Every figure builds with the expected axes, draws what it promises and saves as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from lstm_ae import figures

CLASSES = ("plane", "car", "bird")
RNG = np.random.default_rng(0)


def _float_images(n: int) -> np.ndarray:
    return RNG.uniform(size=(n, 32, 32, 3)).astype(np.float32)


def _saves(fig: Figure, tmp_path: Path) -> None:
    path = tmp_path / "figure.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_grid_rows_are_classes(tmp_path: Path) -> None:
    images = RNG.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 10)  # class "bird" has no images: its row stays blank
    fig = figures.sample_grid(images, labels, CLASSES, per_class=4)
    assert len(fig.axes) == 3 * 4
    assert [fig.axes[r * 4].get_ylabel() for r in range(3)] == list(CLASSES)
    assert sum(len(ax.images) for ax in fig.axes) == 8
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), images[2])  # 2nd image of class 0
    _saves(fig, tmp_path)


def test_sample_grid_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="same length"):
        figures.sample_grid(_float_images(3), np.zeros(2, int), CLASSES)


def test_pixel_histogram_has_a_line_per_channel_and_all(tmp_path: Path) -> None:
    fig = figures.pixel_histogram(_float_images(5), bins=16)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ["R", "G", "B", "all"]
    for line in ax.lines:
        assert len(line.get_xdata()) == 16
        assert np.sum(line.get_ydata()) == pytest.approx(1.0)
    _saves(fig, tmp_path)


def test_channel_correlation_writes_each_value(tmp_path: Path) -> None:
    corr = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.95], [0.8, 0.95, 1.0]])
    fig = figures.channel_correlation(corr)
    assert len(fig.axes) == 2  # heat map and colour bar
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 9 and "0.950" in texts
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["R", "G", "B"]
    _saves(fig, tmp_path)
    with pytest.raises(ValueError, match="3x3"):
        figures.channel_correlation(np.eye(2))


def test_channel_scatter_matrix_has_histograms_on_diagonal(tmp_path: Path) -> None:
    fig = figures.channel_scatter_matrix(RNG.integers(0, 256, size=(500, 3), dtype=np.uint8))
    assert len(fig.axes) == 9
    for i, ax in enumerate(fig.axes):
        on_diagonal = i in (0, 4, 8)
        assert bool(ax.patches) == on_diagonal
        assert bool(ax.collections) != on_diagonal
    _saves(fig, tmp_path)
    with pytest.raises(ValueError, match=r"\(M, 3\)"):
        figures.channel_scatter_matrix(np.zeros((10, 4)))


def test_reconstructions_has_a_row_per_version(tmp_path: Path) -> None:
    clean, noisy, restored = _float_images(6), _float_images(6), _float_images(6)
    fig = figures.reconstructions(clean, noisy, titles=list("abcdef"))
    assert len(fig.axes) == 2 * 6
    assert fig.axes[0].get_title() == "a" and fig.axes[6].get_title() == ""
    fig = figures.reconstructions(clean, noisy, extra=[restored], rows=("clean", "corrupted", "restored"))
    assert len(fig.axes) == 3 * 6
    assert [fig.axes[r * 6].get_ylabel() for r in range(3)] == ["clean", "corrupted", "restored"]
    _saves(fig, tmp_path)


def test_reconstructions_validates_rows_and_lengths() -> None:
    with pytest.raises(ValueError, match="row label"):
        figures.reconstructions(_float_images(2), _float_images(2), extra=[_float_images(2)])
    with pytest.raises(ValueError, match="every row"):
        figures.reconstructions(_float_images(2), _float_images(3))


def test_best_worst_orders_by_error(tmp_path: Path) -> None:
    images = _float_images(10)
    errors = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.05])
    fig = figures.best_worst(images, images, errors, k=3)
    assert len(fig.axes) == 4 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["MSE 0.05", "MSE 0.1", "MSE 0.2"]
    assert [ax.get_title() for ax in fig.axes[6:9]] == ["MSE 0.9", "MSE 0.8", "MSE 0.7"]
    _saves(fig, tmp_path)
    with pytest.raises(ValueError, match="k must"):
        figures.best_worst(images, images, errors, k=11)


def test_loss_curves_marks_best_val_epoch(tmp_path: Path) -> None:
    history = {"loss": [0.09, 0.05, 0.03, 0.02], "val_loss": [0.08, 0.04, 0.035, 0.05]}
    fig = figures.loss_curves(history)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    loss_line = ax.lines[0]
    np.testing.assert_array_equal(loss_line.get_xdata(), [1, 2, 3, 4])
    assert ax.lines[-1].get_label().startswith("best val (epoch 3")
    assert ax.get_legend() is not None
    _saves(fig, tmp_path)
    with pytest.raises(ValueError, match="'loss'"):
        figures.loss_curves({"val_loss": [1.0]})
