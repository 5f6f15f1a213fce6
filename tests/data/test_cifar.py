"""Tests for reading the CIFAR-10 archive: layout, pixel order, and refusal of unsafe archives."""

from __future__ import annotations

import io
import itertools
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lstm_ae.data.cifar import ArchiveError, read_archive, restricted_load
from tests.helpers.archives import BATCHES, CLASS_NAMES, make_archive, official_contents, random_batch


def _member(name: str, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1 if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def test_round_trip_pixel_order_and_class_names(tmp_path: Path) -> None:
    contents = official_contents(per_batch=3)
    data = read_archive(make_archive(tmp_path / "c.tar.gz", contents))
    assert data.x_train.shape == (15, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (3, 32, 32, 3)
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    assert data.class_names == tuple(CLASS_NAMES)
    train_rows = np.concatenate([contents[name][b"data"] for name in BATCHES[:5]])
    # Channel-major rows: channel ch, row r, column c sits at ch * 1024 + r * 32 + c.
    for i, r, c, ch in [(0, 0, 0, 0), (4, 31, 0, 1), (14, 5, 31, 2), (7, 17, 9, 1)]:
        assert data.x_train[i, r, c, ch] == train_rows[i, ch * 1024 + r * 32 + c]
    assert data.y_train.tolist() == list(
        itertools.chain.from_iterable(contents[name][b"labels"] for name in BATCHES[:5])
    )
    assert data.y_test.tolist() == contents["test_batch"][b"labels"]


def test_known_pixel_values(tmp_path: Path) -> None:
    contents = official_contents(per_batch=1)
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, 0 * 1024 + 2 * 32 + 3] = 10  # red at (2, 3)
    row[0, 1 * 1024 + 2 * 32 + 3] = 20  # green at (2, 3)
    row[0, 2 * 1024 + 31 * 32 + 0] = 30  # blue at (31, 0)
    contents["data_batch_2"][b"data"] = row
    data = read_archive(make_archive(tmp_path / "c.tar.gz", contents))
    assert data.x_train[1, 2, 3].tolist() == [10, 20, 0]
    assert data.x_train[1, 31, 0].tolist() == [0, 0, 30]
    assert int(data.x_train[1].sum()) == 60


def test_legacy_numpy_core_pickles_load() -> None:
    # Pickles made by old numpy (like the official archive) name numpy.core.multiarray.
    payload = pickle.dumps({b"data": np.arange(6, dtype=np.uint8)}, protocol=3)
    legacy = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in legacy
    assert restricted_load(io.BytesIO(legacy))[b"data"].tolist() == list(range(6))


@pytest.mark.parametrize(
    "member, reason",
    [
        (_member("../evil"), "'..' component"),
        (_member("cifar-10-batches-py/../../evil"), "'..' component"),
        (_member("/tmp/evil_cifar_abs"), "absolute path"),
        (_member("cifar-10-batches-py/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "link"),
        (_member("cifar-10-batches-py/hard", type=tarfile.LNKTYPE, linkname="x"), "link"),
        (_member("cifar-10-batches-py/dev", type=tarfile.CHRTYPE), "device"),
        (_member("cifar-10-batches-py/fifo", type=tarfile.FIFOTYPE), "fifo"),
    ],
)
def test_unsafe_members_are_refused(
    member: tarfile.TarInfo, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    archive = make_archive(tmp_path / "c.tar.gz", extra=[member])
    with pytest.raises(ArchiveError, match=reason) as info:
        read_archive(archive)
    assert repr(member.name) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tar.gz", "work"]
    assert list(work.iterdir()) == []
    assert not Path("/tmp/evil_cifar_abs").exists()


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_pickle_calling_os_system_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    contents = official_contents()
    contents["data_batch_3"] = {b"data": _Evil(f"touch {marker}"), b"labels": [0]}
    with pytest.raises(ArchiveError) as info:
        read_archive(make_archive(tmp_path / "c.tar.gz", contents))
    message = str(info.value)
    assert "data_batch_3" in message and "system" in message and "refused, nothing was executed" in message
    assert not marker.exists()
    # The control: plain pickle runs the same payload.
    pickle.loads(pickle.dumps(_Evil(f"touch {marker}")))
    assert marker.exists()


def test_restricted_load_refuses_builtins_eval() -> None:
    class Eval:
        def __reduce__(self) -> tuple:
            return (eval, ("1 + 1",))

    with pytest.raises(ArchiveError, match="builtins.eval; refused"):
        restricted_load(io.BytesIO(pickle.dumps(Eval())))


def _read_with(tmp_path: Path, member: str, value: object) -> str:
    contents = official_contents()
    contents[member] = value
    with pytest.raises(ArchiveError) as info:
        read_archive(make_archive(tmp_path / "c.tar.gz", contents))
    assert member in str(info.value)
    return str(info.value)


def test_wrong_shape(tmp_path: Path) -> None:
    batch = random_batch(2, 0) | {b"data": np.zeros((2, 3000), dtype=np.uint8)}
    assert "shape (N, 3072), got uint8 array of shape (2, 3000)" in _read_with(
        tmp_path, "data_batch_1", batch
    )


def test_wrong_dtype(tmp_path: Path) -> None:
    batch = random_batch(2, 0) | {b"data": np.zeros((2, 3072), dtype=np.float32)}
    assert "should be a uint8 array" in _read_with(tmp_path, "test_batch", batch)


def test_label_out_of_range(tmp_path: Path) -> None:
    batch = random_batch(2, 0) | {b"labels": [3, 10]}
    assert "label 10 is outside 0..9" in _read_with(tmp_path, "data_batch_4", batch)


def test_label_count_mismatch(tmp_path: Path) -> None:
    batch = random_batch(2, 0) | {b"labels": [3]}
    assert "expected 2 labels" in _read_with(tmp_path, "data_batch_5", batch)


def test_wrong_number_of_class_names(tmp_path: Path) -> None:
    meta = {b"label_names": [b"cat", b"dog"]}
    assert "should list 10 names, got 2 entries" in _read_with(tmp_path, "batches.meta", meta)


def test_member_that_is_not_a_pickle(tmp_path: Path) -> None:
    assert "not a readable pickle" in _read_with(tmp_path, "data_batch_2", b"definitely not a pickle")


@pytest.mark.parametrize("missing", ["data_batch_5", "test_batch", "batches.meta"])
def test_missing_member(missing: str, tmp_path: Path) -> None:
    contents = official_contents()
    del contents[missing]
    with pytest.raises(ArchiveError, match=f"cifar-10-batches-py/{missing}: missing from the archive"):
        read_archive(make_archive(tmp_path / "c.tar.gz", contents))


def test_truncated_gzip(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "c.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(
        ArchiveError, match="not a readable cifar-10-python.tar.gz .*run the fetch stage again"
    ):
        read_archive(archive)


def test_not_gzip_at_all(tmp_path: Path) -> None:
    archive = tmp_path / "c.tar.gz"
    archive.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ArchiveError, match="not a readable cifar-10-python.tar.gz"):
        read_archive(archive)


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no such file; run the fetch stage"):
        read_archive(tmp_path / "absent.tar.gz")
