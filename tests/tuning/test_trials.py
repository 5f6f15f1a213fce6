"""What a spawned tuning process does (lstm_ae.tuning.trials): signals held while Optuna records
a trial. Whole studies through the command line are in test_workers.py."""

from __future__ import annotations

import math
import os
import signal

import optuna
import pytest
from optuna.trial import TrialState

from lstm_ae import startup
from lstm_ae.tuning import trials


def interrupt_while_recording(study: optuna.Study, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send this process SIGINT as Optuna starts writing a finished trial's state, as the
    Ctrl-C in a CI run did (it landed in the journal's fsync)."""
    record = study._storage.set_trial_state_values

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next bytecode, inside this call
        return record(*args, **kwargs)

    monkeypatch.setattr(study._storage, "set_trial_state_values", interrupted)


def test_a_ctrl_c_while_optuna_records_a_trial_waits_until_it_is_recorded(
    restore_signal_handling, monkeypatch
) -> None:
    startup.handle_signals()
    study = optuna.create_study()
    interrupt_while_recording(study, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        trials.optimize(study, lambda trial: 0.5, n_trials=3, study_size=3, deadline=math.inf)
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, 0.5)]  # and no second trial


def test_without_holding_the_signal_optuna_breaks_on_it(restore_signal_handling, monkeypatch) -> None:
    """The control: Python's own handler raises inside Optuna's bookkeeping; Optuna 5.0 then
    fails on its own unbound variable and leaves the finished trial RUNNING."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
    study = optuna.create_study()
    interrupt_while_recording(study, monkeypatch)
    with pytest.raises(UnboundLocalError, match="updated_state"):
        study.optimize(lambda trial: 0.5, n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.RUNNING]
