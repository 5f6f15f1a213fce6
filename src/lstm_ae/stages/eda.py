"""eda: the report's exploratory analysis of the training images, as figures and two numbers."""

from __future__ import annotations

import json
import logging

import numpy as np

from lstm_ae import figures
from lstm_ae.atomic import atomic_dir, write_text
from lstm_ae.config import Config
from lstm_ae.data import statistics
from lstm_ae.data.dataset import load_dataset
from lstm_ae.data.sequences import to_images
from lstm_ae.paths import EDA_FIGURES, EDA_METRICS, PROCESSED

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, float]:
    """Analyse all 50,000 training images (train + validation), as the report did."""
    data = load_dataset(PROCESSED)
    images = to_images(np.concatenate([data.x_train, data.x_val]))
    labels = np.concatenate([data.y_train, data.y_val])
    corr = statistics.channel_corr(images)
    stats = statistics.brightness_stats(images)
    stats.update(
        {
            f"corr_{a}{b}": float(corr[i, j])
            for i, j, a, b in ((0, 1, "r", "g"), (0, 2, "r", "b"), (1, 2, "g", "b"))
        }
    )

    rng = np.random.default_rng(cfg.seed)
    pixels = images.reshape(-1, 3)[
        rng.choice(len(images) * 1024, size=cfg.eda.scatter_samples, replace=False)
    ]
    drawn = {
        "samples": figures.sample_grid(images, labels, data.class_names),
        "pixel_histogram": figures.pixel_histogram(images),
        "channel_correlation": figures.channel_correlation(corr),
        "channel_scatter_matrix": figures.channel_scatter_matrix(pixels),
    }
    with atomic_dir(EDA_FIGURES) as folder:
        for name, figure in drawn.items():
            figure.savefig(folder / f"{name}.png", dpi=100)
    write_text(EDA_METRICS, json.dumps(stats, indent=2) + "\n")
    log.info("brightness mean %.4f, variance %.4f", stats["brightness_mean"], stats["brightness_var"])
    return stats
