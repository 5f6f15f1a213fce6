"""Process start-up: import the TensorFlow-backed modules without TensorFlow's C++ banner, and
turn signals into exceptions that every exit path handles.

TensorFlow 2.21 prints two C++ log lines on import (oneDNN and absl notes) that
TF_CPP_MIN_LOG_LEVEL no longer silences; in a study they would repeat for every trial
process. Only file descriptor 2 is muted, and only during the import: a failing import
still raises its Python error.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
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


class _Interrupts:
    """The process's signal state: ``pending`` is a kept interrupt not raised yet; while
    ``deferring`` is above zero, signals are kept for :func:`raise_pending` instead of raised."""

    pending: KeyboardInterrupt | None = None
    deferring = 0
    redelivering = False  # the unraisable hook has asked for a kept interrupt to be raised again


def handle_signals() -> None:
    """SIGTERM raises :class:`~lstm_ae.errors.Terminated` like Ctrl-C raises KeyboardInterrupt,
    and neither is lost.

    Two ways an interrupt goes wrong are closed here:

    * Raised inside a finaliser or a weakref callback (the garbage collector runs them at any
      moment), the exception cannot propagate: Python prints "Exception ignored in ..." and
      carries on as if no signal had come. The unraisable hook keeps it, and a moment later
      another thread calls ``interrupt_main``, which runs the handler below in the main thread
      and raises the kept exception there. (Called from the hook itself, the handler would run
      inside the hook, where its exception is dropped again.)
    * Raised in the middle of a library's bookkeeping (an SQLAlchemy session writing to the
      MLflow store, a lock half taken), the exception can leave a lock held, and the clean-up
      that ends the MLflow run then waits on it for ever. Inside :func:`deferred_interrupts`
      (training uses it) a signal is only kept, and :func:`raise_pending` raises it at a point
      where no library is in the middle of anything.

    Only the first SIGTERM counts; later ones are ignored, so a second signal cannot cut the
    clean-up short (SIGKILL still can).
    """

    def on_signal(signum: int, frame: object) -> None:
        if _Interrupts.redelivering:  # not a new signal: the kept one, unless a safe point raised it already
            _Interrupts.redelivering = False
        elif _Interrupts.pending is None:
            _Interrupts.pending = _new_interrupt(signum)
        if not _Interrupts.deferring:
            raise_pending()

    def unraisable_hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            sys.__unraisablehook__(unraisable)
            return
        _Interrupts.pending, _Interrupts.redelivering = unraisable.exc_value, True
        timer = threading.Timer(REDELIVER_AFTER_S, _thread.interrupt_main)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sys.unraisablehook = unraisable_hook


def _new_interrupt(signum: int) -> KeyboardInterrupt:
    if signum != signal.SIGTERM:
        return KeyboardInterrupt()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from lstm_ae.errors import Terminated

    return Terminated()


def raise_pending() -> None:
    """Raise the interrupt kept by :func:`deferred_interrupts`, if a signal came; a safe point."""
    exc, _Interrupts.pending = _Interrupts.pending, None
    if exc is not None:
        raise exc


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Inside, a Ctrl-C or SIGTERM is kept rather than raised where it lands: the code inside
    calls :func:`raise_pending` at its safe points, and a signal still pending at the end is
    raised on the way out. Without :func:`handle_signals` (as in a library user's process) the
    block changes nothing."""
    _Interrupts.deferring += 1
    try:
        yield
    finally:
        _Interrupts.deferring -= 1
    raise_pending()
