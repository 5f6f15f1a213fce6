"""Read the official CIFAR-10 python archive safely: members checked, pickles restricted to numpy."""

from __future__ import annotations

import gzip
import importlib
import logging
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
from tqdm import tqdm

from lstm_ae.errors import UserError

logger = logging.getLogger(__name__)

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
REQUIRED = (*TRAIN_BATCHES, "test_batch", "batches.meta")
PIXELS = 32 * 32 * 3
NUM_CLASSES = 10

# Exactly what numpy needs to rebuild an ndarray; everything else a pickle asks for is refused.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class ArchiveError(UserError, ValueError):
    """One-line message naming the file/member and what is wrong."""


@dataclass(frozen=True)
class CifarData:
    """The whole data set as arrays: images uint8 (N, 32, 32, 3), labels int64 (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else, so a hostile pickle runs no code."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise ArchiveError(f"pickle asks for {module}.{name}; refused, nothing was executed")
        # Old pickles name numpy.core, which numpy 2 keeps only as a deprecated alias of numpy._core.
        modern = module.replace("numpy.core.", "numpy._core.")
        try:
            return getattr(importlib.import_module(modern), name)
        except ImportError:
            return getattr(importlib.import_module(module), name)


def restricted_load(fileobj: IO[bytes]) -> object:
    """Unpickle a CIFAR batch (Python 2 pickles: byte strings stay bytes) admitting only numpy."""
    return _NumpyOnlyUnpickler(fileobj, encoding="bytes").load()


def read_archive(archive: Path, progress: bool = False) -> CifarData:
    """Read cifar-10-python.tar.gz straight from the tar into memory; nothing is extracted to disk."""
    archive = Path(archive)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such file; run the fetch stage first")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = _checked_members(tar, archive)
            loaded = {}
            for name in tqdm(REQUIRED, desc="reading CIFAR-10", disable=not progress):
                loaded[name] = _load_member(tar, members, name, archive)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError(
            f"{archive}: not a readable cifar-10-python.tar.gz ({exc}); "
            "delete it and run the fetch stage again"
        ) from exc
    train = [_images_and_labels(loaded[name], f"{archive}:{FOLDER}/{name}") for name in TRAIN_BATCHES]
    x_test, y_test = _images_and_labels(loaded["test_batch"], f"{archive}:{FOLDER}/test_batch")
    data = CifarData(
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=x_test,
        y_test=y_test,
        class_names=_class_names(loaded["batches.meta"], f"{archive}:{FOLDER}/batches.meta"),
    )
    logger.info("read %d training and %d test images from %s", len(data.y_train), len(data.y_test), archive)
    return data


def _checked_members(tar: tarfile.TarFile, archive: Path) -> dict[str, tarfile.TarInfo]:
    """Vet every member before anything is read, so one bad entry condemns the whole archive."""
    members = {}
    for member in tar.getmembers():
        problem = _member_problem(member)
        if problem:
            raise ArchiveError(f"{archive}: member {member.name!r} {problem}; refused, nothing was read")
        members[member.name] = member
    return members


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a member is unsafe, or None when it is a plain file or folder inside the archive."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith("\\") or (path.parts and ":" in path.parts[0]):
        return "has an absolute path"
    if ".." in path.parts or ".." in member.name.split("\\"):
        return "has a '..' component"
    if member.issym() or member.islnk():
        return f"is a link to {member.linkname!r}"
    if member.isdev():
        return "is a device or fifo"
    if not (member.isfile() or member.isdir()):
        return "is not a regular file or folder"
    return None


def _load_member(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, archive: Path
) -> object:
    """Unpickle one required member, naming it in any error."""
    full = f"{FOLDER}/{name}"
    where = f"{archive}:{full}"
    member = members.get(full)
    if member is None or not member.isfile():
        raise ArchiveError(f"{where}: missing from the archive; delete it and run the fetch stage again")
    fileobj = tar.extractfile(member)
    try:
        return restricted_load(fileobj)
    except ArchiveError as exc:
        raise ArchiveError(f"{where}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ArchiveError(f"{where}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def _images_and_labels(batch: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch dict and turn its channel-major rows into HWC images."""
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ArchiveError(f"{where}: expected a dict with b'data' and b'labels', got {type(batch).__name__}")
    data = batch[b"data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != PIXELS
    ):
        got = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise ArchiveError(f"{where}: b'data' should be a uint8 array of shape (N, {PIXELS}), got {got}")
    labels = _labels(batch[b"labels"], len(data), where)
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane 32x32 row-major.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _labels(raw: object, count: int, where: str) -> np.ndarray:
    """Labels as int64, checked to be ``count`` integers in 0..9."""
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise ArchiveError(f"{where}: b'labels' should be a list of ints, got {type(raw).__name__}")
    labels = np.asarray(raw)
    if labels.ndim != 1 or len(labels) != count:
        raise ArchiveError(f"{where}: expected {count} labels (one per image), got shape {labels.shape}")
    if count and (labels.dtype.kind not in "iu"):
        raise ArchiveError(f"{where}: labels should be integers, got {labels.dtype}")
    bad = labels[(labels < 0) | (labels >= NUM_CLASSES)] if count else labels
    if bad.size:
        raise ArchiveError(f"{where}: label {bad[0]} is outside 0..{NUM_CLASSES - 1}")
    return labels.astype(np.int64)


def _class_names(meta: object, where: str) -> tuple[str, ...]:
    """The ten class names from batches.meta, decoded to str."""
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, (list, tuple)) or len(names) != NUM_CLASSES:
        got = f"{len(names)} entries" if isinstance(names, (list, tuple)) else type(names).__name__
        raise ArchiveError(f"{where}: b'label_names' should list {NUM_CLASSES} names, got {got}")
    if not all(isinstance(name, (bytes, str)) for name in names):
        raise ArchiveError(f"{where}: b'label_names' should hold strings")
    return tuple(name.decode("utf-8") if isinstance(name, bytes) else name for name in names)
