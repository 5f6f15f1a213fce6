"""The processed data set on disk: uint8 row sequences and labels in one .npz, scaled when loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstm_ae.atomic import atomic_path
from lstm_ae.data.sequences import scale
from lstm_ae.paths import require

_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """Train/validation/test row sequences (N, 32, 96) with their labels and class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    archive_md5: str

    def scaled(self) -> Dataset:
        """The same data with pixels as float32 in [0, 1], the model's input."""
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        for name in ("x_train", "x_val", "x_test"):
            arrays[name] = scale(arrays[name])
        return Dataset(**arrays, class_names=self.class_names, archive_md5=self.archive_md5)


def save_dataset(data: Dataset, path: Path) -> None:
    """Write uncompressed (fast to load; the full set as uint8 is about 185 MB), atomically."""
    with atomic_path(path) as tmp:
        np.savez(
            tmp,
            **{name: getattr(data, name) for name in _ARRAYS},
            class_names=np.array(data.class_names),
            archive_md5=np.array(data.archive_md5),
        )


def load_dataset(path: Path) -> Dataset:
    """Read what save_dataset wrote; a missing file says which stage makes it."""
    with np.load(require(Path(path), made_by="preprocess"), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in _ARRAYS}
        return Dataset(
            **arrays,
            class_names=tuple(str(c) for c in npz["class_names"]),
            archive_md5=str(npz["archive_md5"]),
        )


def read_archive_md5(path: Path) -> str:
    """The source archive's md5 alone (an .npz member is read only when asked for)."""
    with np.load(require(Path(path), made_by="preprocess"), allow_pickle=False) as npz:
        return str(npz["archive_md5"])
