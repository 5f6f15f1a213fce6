"""Process start-up: import the TensorFlow-backed modules without TensorFlow's C++ banner, and
turn signals into exceptions that every exit path handles.

TensorFlow 2.21 prints two C++ log lines on import (oneDNN and absl notes) that
TF_CPP_MIN_LOG_LEVEL no longer silences; in a study they would repeat for every trial
process. Only file descriptor 2 is muted, and only during the import: a failing import
still raises its Python error.
"""

from __future__ import annotations

import _thread
import importlib
import os
import signal
import sys
import threading
from types import ModuleType
from typing import Any


REDELIVER_AFTER_S = 0.01  # handle_signals: time for the unraisable hook to return first


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


def handle_signals() -> None:
    """SIGTERM raises :class:`~lstm_ae.errors.Terminated`, and no Ctrl-C or SIGTERM is lost.

    A signal's exception raised while Python runs a finaliser or a weakref callback (the garbage
    collector runs them at any moment) cannot propagate from there: Python prints "Exception
    ignored in ..." with a traceback and carries on as if no signal had come, so the run would
    go on. The unraisable hook keeps such an interrupt and has it raised again, quietly, in the
    main thread: a moment later another thread calls ``interrupt_main``, which runs the SIGINT
    handler below, and the handler raises the kept exception. (Called from the hook itself, the
    handler would run inside the hook, where its exception is dropped again.)
    """
    raise_on_sigterm()
    dropped: list[KeyboardInterrupt] = []

    def on_sigint(signum: int, frame: object) -> None:
        raise dropped.pop() if dropped else KeyboardInterrupt()

    def unraisable_hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            sys.__unraisablehook__(unraisable)
            return
        dropped.append(unraisable.exc_value)
        timer = threading.Timer(REDELIVER_AFTER_S, _thread.interrupt_main)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = unraisable_hook


def tune_worker(*args: Any) -> None:
    """Target of a spawned tuning process: this module is light, so the pickled call imports no
    TensorFlow until import_quietly does.

    On Ctrl-C or SIGTERM Optuna has already recorded the running trial as failed; exit with the
    shell's code for the signal instead of a traceback per worker.
    """
    handle_signals()
    try:
        import_quietly("lstm_ae.trials").work(*args)
    except KeyboardInterrupt as exc:
        sys.exit(128 + getattr(exc, "signum", signal.SIGINT))
