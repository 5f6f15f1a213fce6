"""The entry point of a spawned tuning process, and the job it is given: light to import.

Unpickling a :class:`WorkerJob` in the new process imports this module, the config and
lstm_ae.startup, and no TensorFlow (so no banner) before :func:`tune_worker` mutes the import.
The trials themselves run in lstm_ae.tuning.trials.
"""

from __future__ import annotations

import math
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lstm_ae.startup import handle_signals, import_quietly

if TYPE_CHECKING:  # the config module is imported where a job is made or unpickled, not here
    from lstm_ae.config import Config


@dataclass(frozen=True)
class WorkerJob:
    """What one spawned tuning process is asked to do, pickled to it by multiprocessing.

    It lives here, not in lstm_ae.tuning.trials, so that unpickling it in the new process
    imports no TensorFlow (and prints no banner) before :func:`tune_worker` mutes the import.
    Frozen: the runner makes each process's job from one template with ``dataclasses.replace``,
    and no process can change what another was given.
    """

    cfg: Config
    parent_id: str  # the study's MLflow run, parent of every trial's run
    experiment_id: str
    n_trials: int  # at most this many trials, then the process exits (memory stays flat)
    worker: int  # the runner's slot: seeds each process's sampler differently
    log_level: int | None = None  # None: logging is already set up (the trials run in this process)
    deadline: float = math.inf  # time.monotonic() after which no trial starts


def tune_worker(job: WorkerJob) -> None:
    """Target of a spawned tuning process: this module is light, so the pickled call imports no
    TensorFlow until import_quietly does.

    On Ctrl-C or SIGTERM Optuna has already recorded the running trial as failed; exit with the
    shell's code for the signal instead of a traceback per worker.
    """
    handle_signals()
    try:
        import_quietly("lstm_ae.tuning.trials").work(job)
    except KeyboardInterrupt as exc:
        sys.exit(128 + getattr(exc, "signum", signal.SIGINT))
