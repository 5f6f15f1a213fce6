"""Tiny CIFAR-10 archives in the official layout, built by the tests themselves."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def random_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def official_contents(per_batch: int = 2) -> dict[str, object]:
    """Member name (inside cifar-10-batches-py/) -> object to pickle, as the official archive has."""
    contents: dict[str, object] = {name: random_batch(per_batch, seed) for seed, name in enumerate(BATCHES)}
    contents["batches.meta"] = {
        b"label_names": [name.encode() for name in CLASS_NAMES],
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    return contents


def _add(tar: tarfile.TarFile, name: str, payload: bytes, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(payload) if info.isfile() else None)


def make_archive(
    path: Path, contents: dict[str, object] | None = None, extra: list[tarfile.TarInfo] | None = None
) -> Path:
    """Write a tar.gz in the official layout; pass raw bytes as a value to store them unpickled."""
    contents = official_contents() if contents is None else contents
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
        for name, obj in contents.items():
            payload = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=4)
            _add(tar, f"cifar-10-batches-py/{name}", payload)
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path
