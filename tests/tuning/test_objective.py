"""The objective's pruning callback: each epoch reported to Optuna, the last one never pruned."""

from __future__ import annotations

import optuna
import pytest

from lstm_ae.tuning.objective import PruningCallback


class FakeTrial:
    """Records reports; prunes when told to."""

    def __init__(self, prune: bool) -> None:
        self.prune, self.reports = prune, []

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune


def test_pruning_callback_reports_each_epoch_and_raises_when_pruned() -> None:
    keep = FakeTrial(prune=False)
    PruningCallback(keep).on_epoch_end(0, {"val_loss": 0.5})
    PruningCallback(keep).on_epoch_end(1, {"val_loss": 0.4})
    assert keep.reports == [(1, 0.5), (2, 0.4)]
    with pytest.raises(optuna.TrialPruned, match="after epoch 3"):
        PruningCallback(FakeTrial(prune=True)).on_epoch_end(2, {"val_loss": 0.4})


def test_the_last_epoch_is_reported_but_never_pruned() -> None:
    trial = FakeTrial(prune=True)
    PruningCallback(trial, last_epoch=3).on_epoch_end(2, {"val_loss": 0.4})
    assert trial.reports == [(3, 0.4)]
    with pytest.raises(optuna.TrialPruned):
        PruningCallback(trial, last_epoch=3).on_epoch_end(1, {"val_loss": 0.4})


def test_a_nan_loss_is_not_reported_so_the_trial_fails_instead_of_being_pruned() -> None:
    trial = FakeTrial(prune=True)
    PruningCallback(trial).on_epoch_end(0, {"val_loss": float("nan")})
    assert trial.reports == []
