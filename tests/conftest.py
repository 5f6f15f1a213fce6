"""Fixtures shared by several test modules."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def restore_signal_handling() -> Iterator[None]:
    """Whatever a test installs, this process's handlers and unraisable hook are put back after:
    every test, since `cli.main` installs lstm_ae.startup's handlers, and a test after it in the
    same process (pytest-xdist's order changes from run to run) would otherwise inherit them."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    hook = sys.unraisablehook
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    sys.unraisablehook = hook


# The longest test files, longest first, by the sums of pytest's --durations=80 list in a CI run
# on three workers (2026-12-05: 646 s for test_workers down to 69 s; docs/development.md, "Tests").
# Refresh it when a file's time changes much: a wrong order costs minutes of CI, never a result.
LONGEST_FIRST = (
    "tests/tuning/test_workers.py",
    "tests/test_tracking_server.py",
    "tests/test_preset_experiments.py",
    "tests/stages/test_tune.py",
    "tests/test_pipeline.py",
    "tests/test_ui.py",
    "tests/model/test_fit.py",
    "tests/test_mirror_subset.py",
    "tests/test_mlproject.py",
    "tests/stages/test_train.py",
    "tests/test_remote.py",
    "tests/serving/test_model_logged_before_the_move.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first. `make test` gives whole files to pytest-xdist's workers (--dist
    loadfile) in collection order; a long end-to-end file handed out last keeps one worker busy
    while the others sit idle, whereas the many short unit-test files fill the end well. The sort
    is stable: tests keep their order within a file, and the other files theirs."""
    root = Path(__file__).resolve().parents[1]
    stale = [name for name in LONGEST_FIRST if not (root / name).is_file()]
    if stale:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names missing files: {', '.join(stale)}")
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
