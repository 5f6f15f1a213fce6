"""Atomic writes: a failure leaves the previous file or folder exactly as it was, with no leftovers."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lstm_ae.atomic import atomic_dir, atomic_path, write_text


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_path_writes_on_success_with_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "models" / "model.keras"
    with atomic_path(target) as tmp:
        # Beside the target (same file system) and with its suffix (formats are chosen by suffix).
        assert tmp.parent == target.parent and tmp.name.endswith(".keras")
        tmp.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o644  # not mkstemp's 0600
    assert os.listdir(target.parent) == ["model.keras"]


def test_atomic_path_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old \x00 bytes")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half-written")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old \x00 bytes"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_write_text_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "history.csv"
    write_text(target, "epoch,loss\n")
    write_text(target, "epoch,loss\n1,0.5\n")
    assert target.read_text(encoding="utf-8") == "epoch,loss\n1,0.5\n"
    assert mode(target) & 0o044 == 0o044
    assert os.listdir(tmp_path) == ["history.csv"]


def test_atomic_dir_replaces_the_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "figures"
    target.mkdir()
    (target / "stale.png").write_bytes(b"old")
    with atomic_dir(target) as tmp:
        assert list(tmp.iterdir()) == []
        (tmp / "fresh.png").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["fresh.png"]
    assert (target / "fresh.png").read_bytes() == b"new"
    assert mode(target) == 0o755  # not mkdtemp's 0700
    assert os.listdir(tmp_path) == ["figures"]


def test_atomic_dir_creates_a_new_folder(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "figures"
    with atomic_dir(target) as tmp:
        (tmp / "a.png").write_bytes(b"a")
    assert (target / "a.png").read_bytes() == b"a"
    assert os.listdir(target.parent) == ["figures"]


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "figures"
    target.mkdir()
    (target / "a.png").write_bytes(b"old a")
    (target / "b.png").write_bytes(b"old b")
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(target) as tmp:
        (tmp / "a.png").write_bytes(b"new a")
        raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["a.png", "b.png"]
    assert (target / "a.png").read_bytes() == b"old a"
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith((".tmp", ".old"))]
    assert leftovers == [] and os.listdir(tmp_path) == ["figures"]
