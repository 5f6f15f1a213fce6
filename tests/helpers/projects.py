"""A throw-away project folder for tests that run a stage: tiny processed data and params.yaml."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lstm_ae.config import parse_config
from lstm_ae.data.dataset import Dataset, save_dataset
from lstm_ae.paths import PROCESSED

REPO = Path(__file__).resolve().parents[2]
TINY_SWEEP = {"code_size": 8, "features": 4, "units": 4, "patch": 4}  # a sweep autoencoder in seconds


def make_tiny_project(root: Path, **sections: Any) -> Path:
    """Random 32x96 uint8 "images" (96 train, 48 validation, 16 test) and the repo's params.yaml
    with each given section updated (a top-level value such as ``task`` replaced), validated
    before it is written.

    96 images are fewer than the default 256-float code that PCA starts the sweep autoencoder at,
    so the project trains the LSTM autoencoder (model.family autoencoder) unless a test names a
    family, and a sweep autoencoder gets an 8-float code."""
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        return rng.integers(0, 256, size=(n, 32, 96), dtype=np.uint8)

    def labels(n: int) -> np.ndarray:
        return rng.integers(0, 10, size=n, dtype=np.int64)

    data = Dataset(
        images(96), labels(96), images(48), labels(48), images(16), labels(16), tuple("abcdefghij"), "0" * 32
    )
    save_dataset(data, root / PROCESSED)
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["model"]["family"] = "autoencoder"
    raw["model"]["sweep"].update(TINY_SWEEP)
    for section, values in sections.items():
        if isinstance(values, dict):
            raw[section].update(values)
        else:
            raw[section] = values
    parse_config(raw)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return root


def cli_env() -> dict[str, str]:
    """This environment without MLflow/DVC variables, with the checkout's sources first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PYTHONPATH"] = str(REPO / "src")
    return env
