"""The processed .npz: a lossless round trip, scaling on load, the archive's md5 alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lstm_ae.data.dataset import Dataset, load_dataset, read_archive_md5, save_dataset
from lstm_ae.paths import MissingInputError


def tiny() -> Dataset:
    rng = np.random.default_rng(1)
    x = lambda n: rng.integers(0, 256, size=(n, 32, 96), dtype=np.uint8)
    y = lambda n: rng.integers(0, 10, size=n, dtype=np.int64)
    return Dataset(x(6), y(6), x(3), y(3), x(2), y(2), tuple("abcdefghij"), "f" * 32)


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    data = tiny()
    save_dataset(data, tmp_path / "d.npz")
    loaded = load_dataset(tmp_path / "d.npz")
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(data, name))
    assert loaded.class_names == data.class_names
    assert read_archive_md5(tmp_path / "d.npz") == "f" * 32


def test_scaled_gives_float32_in_unit_range(tmp_path: Path) -> None:
    scaled = tiny().scaled()
    assert scaled.x_train.dtype == np.float32
    assert 0.0 <= scaled.x_train.min() and scaled.x_train.max() <= 1.0
    assert scaled.y_train.dtype == np.int64


def test_missing_file_names_the_stage_that_makes_it(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="dvc repro preprocess"):
        read_archive_md5(tmp_path / "absent.npz")
