"""Process start-up: import the TensorFlow-backed modules without TensorFlow's C++ banner.

TensorFlow 2.21 prints two C++ log lines on import (oneDNN and absl notes) that
TF_CPP_MIN_LOG_LEVEL no longer silences; in a study they would repeat for every trial
process. Only file descriptor 2 is muted, and only during the import: a failing import
still raises its Python error.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from types import ModuleType
from typing import Any


def import_quietly(name: str) -> ModuleType:
    """Import ``name`` with the process's stderr sent to /dev/null meanwhile."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        return importlib.import_module(name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def raise_on_sigterm() -> None:
    """Turn this process's first SIGTERM into :class:`~lstm_ae.errors.Terminated`; later ones
    are ignored, so a second signal cannot cut the clean-up short (SIGKILL still can)."""

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        from lstm_ae.errors import Terminated

        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)


def tune_worker(*args: Any) -> None:
    """Target of a spawned tuning process: this module is light, so the pickled call imports no
    TensorFlow until import_quietly does.

    On Ctrl-C or SIGTERM Optuna has already recorded the running trial as failed; exit with the
    shell's code for the signal instead of a traceback per worker.
    """
    raise_on_sigterm()
    try:
        import_quietly("lstm_ae.trials").work(*args)
    except KeyboardInterrupt as exc:
        sys.exit(128 + getattr(exc, "signum", signal.SIGINT))
