"""Quiet imports: TensorFlow's C++ banner is muted, Python errors are not; signals are never lost, and
wait for a safe point where asked to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lstm_ae.startup import import_quietly

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_output_to_fd_2_during_the_import_is_muted_and_stderr_works_after(tmp_path: Path) -> None:
    (tmp_path / "noisy.py").write_text("import os\nos.write(2, b'banner from C++\\n')\nVALUE = 7\n")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from lstm_ae.startup import import_quietly\n"
        "print(import_quietly('noisy').VALUE)\n"
        "import os; os.write(2, b'after\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.stdout == "7\n"
    assert result.stderr == "after\n"


def test_a_failing_import_still_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_module_for_test.py").write_text("raise ImportError('missing piece')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="missing piece"):
        import_quietly("broken_module_for_test")


FINALISER_SCRIPT = """
import sys, time
from lstm_ae.errors import Terminated
from lstm_ae.startup import handle_signals
if sys.argv[1] == "handled":
    handle_signals()

class Finaliser:
    def __init__(self, exc):
        self.exc = exc

    def __del__(self):  # where a signal's exception lands when it arrives during garbage collection
        raise self.exc

for exc in (KeyboardInterrupt(), Terminated()):
    try:
        Finaliser(exc)  # dropped at once: its __del__ raises where nothing can catch it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pass
        print("lost")
    except KeyboardInterrupt as caught:
        print(type(caught).__name__, caught is exc, getattr(caught, "signum", 2))
"""


@pytest.mark.parametrize("mode", ["handled", "python-default"])
def test_an_interrupt_raised_in_a_finaliser_is_raised_again_not_lost(mode: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FINALISER_SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if mode == "handled":
        # The same exception, SIGTERM's exit code kept, and no "Exception ignored" traceback.
        assert result.stdout == "KeyboardInterrupt True 2\nTerminated True 15\n"
        assert result.stderr == ""
    else:  # what handle_signals prevents: Python drops the interrupt and prints a traceback
        assert result.stdout == "lost\nlost\n"
        assert "Exception ignored" in result.stderr and "Traceback" in result.stderr


DEFERRAL_SCRIPT = """
import signal, time
from lstm_ae.startup import deferred_interrupts, handle_signals, raise_pending
handle_signals()
with deferred_interrupts():
    signal.raise_signal(signal.SIGINT)  # Python runs the handler before this call returns
    print("kept")
    signal.raise_signal(signal.SIGINT)  # a second Ctrl-C while one is kept: still one interrupt
    try:
        raise_pending()
    except KeyboardInterrupt:
        print("raised at the safe point")
    raise_pending()
    print("and only there")
try:
    with deferred_interrupts():
        signal.raise_signal(signal.SIGTERM)
        print("kept to the end")
except KeyboardInterrupt as exc:
    print("raised on the way out", type(exc).__name__)
try:
    signal.raise_signal(signal.SIGINT)
    print("not raised")
except KeyboardInterrupt:
    print("raised at once outside")
"""


def test_inside_deferred_interrupts_a_signal_waits_for_a_safe_point_or_the_end() -> None:
    result = subprocess.run(
        [sys.executable, "-c", DEFERRAL_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "kept",
        "raised at the safe point",
        "and only there",
        "kept to the end",
        "raised on the way out Terminated",
        "raised at once outside",
    ]


NO_SECOND_DELIVERY_SCRIPT = """
import time
from lstm_ae.startup import handle_signals, raise_pending
handle_signals()

class Finaliser:
    def __del__(self):
        raise KeyboardInterrupt()

try:
    Finaliser()  # kept by the unraisable hook, which asks for it to be raised again shortly
    raise_pending()  # but a safe point comes first
except KeyboardInterrupt:
    print("raised at the safe point")
try:
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        pass
    print("not raised again")
except KeyboardInterrupt:
    print("raised twice")
"""


def test_an_interrupt_kept_from_a_finaliser_is_raised_once_even_when_a_safe_point_comes_first() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_SECOND_DELIVERY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["raised at the safe point", "not raised again"]
