"""The Optuna search space and the study's bookkeeping: storage, sampler, pruner and reports.

A trial's parameters are turned into the same configs that `train` uses. Nothing here imports
Keras (the objective that trains a trial is lstm_ae.tuning.objective), so the command that runs
a study and only supervises its worker processes starts without TensorFlow.
"""

from __future__ import annotations

import re
import shlex
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from lstm_ae.config import Config, ModelConfig, SearchSpace, TrainConfig
from lstm_ae.errors import UserError
from lstm_ae.tracking.databases import with_installed_driver

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

# Called with a trial that Optuna's heartbeat found silent and failed.
StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class StorageError(UserError, ValueError):
    """tune.storage names a database that cannot be opened."""


def suggest_params(trial: optuna.Trial, space: SearchSpace, family: str = "autoencoder") -> dict[str, Any]:
    """Draw one point of the search space; the names are what Optuna and MLflow show."""
    if family == "sweep_ae":
        sweep = space.sweep
        return {
            "sweep_features": trial.suggest_categorical("sweep_features", sweep.features),
            "sweep_units": trial.suggest_categorical("sweep_units", sweep.units),
            "sweep_patch": trial.suggest_categorical("sweep_patch", sweep.patch),
            "sweep_linear_rate": trial.suggest_categorical("sweep_linear_rate", sweep.linear_rate),
            "learning_rate": trial.suggest_float(
                "learning_rate", sweep.learning_rate.low, sweep.learning_rate.high, log=True
            ),
            "batch_size": trial.suggest_categorical("batch_size", sweep.batch_size),
        }
    if family == "restorer":
        return {
            "restorer_features": trial.suggest_categorical("restorer_features", space.restorer.features),
            "restorer_units": trial.suggest_categorical("restorer_units", space.restorer.units),
            "restorer_blocks": trial.suggest_categorical("restorer_blocks", space.restorer.blocks),
            "learning_rate": trial.suggest_float(
                "learning_rate", space.restorer.learning_rate.low, space.restorer.learning_rate.high, log=True
            ),
            "batch_size": trial.suggest_categorical("batch_size", space.restorer.batch_size),
        }
    return {
        "latent_size": trial.suggest_categorical("latent_size", space.latent_size),
        "encoder_layers": trial.suggest_categorical("encoder_layers", space.encoder_layers),
        "encoder_width": trial.suggest_categorical("encoder_width", space.encoder_width),
        "decoder_layers": trial.suggest_categorical("decoder_layers", space.decoder_layers),
        "decoder_width": trial.suggest_categorical("decoder_width", space.decoder_width),
        "learning_rate": trial.suggest_float(
            "learning_rate", space.learning_rate.low, space.learning_rate.high, log=True
        ),
        "batch_size": trial.suggest_categorical("batch_size", space.batch_size),
        "head": trial.suggest_categorical("head", space.head),
        "bidirectional": trial.suggest_categorical("bidirectional", space.bidirectional),
        "row_index": trial.suggest_categorical("row_index", space.row_index),
    }


def configs_from_params(
    params: Mapping[str, Any],
    train: TrainConfig,
    max_epochs: int | None = None,
    precision: str = "float32",
    base: ModelConfig | None = None,
) -> tuple[ModelConfig, TrainConfig]:
    """Map trial parameters to the pipeline's ModelConfig and TrainConfig (validated again).

    Like the train keys outside the search, ``precision`` comes from the pipeline's params
    (model.precision), so a study on a bfloat16 CPU can compute in bfloat16 too. A restorer
    trial (its parameters start with ``restorer_``) changes only model.restorer of ``base``,
    the pipeline's model section; a sweep autoencoder trial (``sweep_``) only model.sweep.
    """
    if "sweep_units" in params or "restorer_units" in params:
        model = _section_model(params, base, precision)
    else:
        model = ModelConfig(
            family="autoencoder",
            encoder_widths=(params["encoder_width"],) * params["encoder_layers"] + (params["latent_size"],),
            decoder_widths=(params["decoder_width"],) * params["decoder_layers"],
            head=params["head"],
            # Absent from the trials of studies that began before these choices existed.
            bidirectional=params.get("bidirectional", False),
            row_index=params.get("row_index", False),
            precision=precision,
        )
    update = {"learning_rate": params["learning_rate"], "batch_size": params["batch_size"]}
    if max_epochs is not None:
        update["max_epochs"] = max_epochs
    return model, TrainConfig.model_validate({**train.model_dump(), **update})


# A family searched within its own section of the model settings: the trial parameters' prefix.
SECTION_FAMILIES = {"restorer": "restorer", "sweep": "sweep_ae"}


def _section_model(params: Mapping[str, Any], base: ModelConfig | None, precision: str) -> ModelConfig:
    """``base`` with the section a restorer (``restorer_*``) or sweep autoencoder (``sweep_*``) trial
    drew replaced, key by key, and its family set."""
    section = "restorer" if "restorer_units" in params else "sweep"
    family = SECTION_FAMILIES[section]
    if base is None:
        what = "a restorer" if family == "restorer" else "a sweep autoencoder"
        raise ValueError(f"{what} trial needs the pipeline's model section as its base")
    prefix = f"{section}_"
    drawn = {key.removeprefix(prefix): value for key, value in params.items() if key.startswith(prefix)}
    current = getattr(base, section).model_dump()
    return ModelConfig.model_validate(
        {**base.model_dump(), "family": family, section: {**current, **drawn}, "precision": precision}
    )


def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    """Seeded TPE: the same study from scratch proposes the same trials (with one worker)."""
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    """median (default): stop a trial whose epoch loss is worse than the median of earlier trials
    at the same epoch, after 5 trials have finished; hyperband: successive halving brackets."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_storage(
    storage: str, root: Path, heartbeat_s: int | None = None, on_stale: StaleCallback | None = None
) -> optuna.storages.BaseStorage:
    """An Optuna storage: a URL (anything with ``://``) is a database, a path a journal file under ``root``.

    Optuna's journal file is safe for several processes on one machine (it locks the file), and
    needs no server, so it is the project's default. A database gets Optuna's heartbeat: each
    running trial records one every ``heartbeat_s`` seconds, and before a trial starts, trials
    silent for twice that long (their worker was killed, their machine lost) are failed and
    passed to ``on_stale``. The journal has no heartbeat in Optuna 5; on one machine
    ``workers.fail_orphans`` finds such trials by process id instead.
    """
    if "://" not in storage:
        path = Path(storage) if Path(storage).is_absolute() else root / storage
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    try:
        return _open_database(with_installed_driver(storage), heartbeat_s, on_stale)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise StorageError(
            f"tune.storage: cannot open {redact(storage)} ({reason}); check the URL and that the database "
            "server is running, or use a journal file path"
        ) from exc


DATABASE_OPEN_TRIES = 5


def _open_database(
    storage: str, heartbeat_s: int | None, on_stale: StaleCallback | None
) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage, tried again when another process is creating its tables right now.

    On a new PostgreSQL database Optuna creates its tables on first open, and two machines doing
    that at once collide in PostgreSQL's catalog ("duplicate key value violates unique constraint
    pg_type_typname_nsp_index"); a second try finds the tables made.
    """
    attempt = 1
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's
                return optuna.storages.RDBStorage(
                    storage, heartbeat_interval=heartbeat_s, heartbeat_stale_trial_callback=on_stale
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            collided = isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc)
            if not collided or attempt == DATABASE_OPEN_TRIES:
                raise
            time.sleep(attempt)
            attempt += 1


def redact(url: str) -> str:
    """A storage URL without its password, fit for logs and run tags."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards n_trials: complete or pruned (failed ones are retried)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def best_trial_or_none(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial so far, or None before the first one completes."""
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def trial_epochs(study: optuna.Study) -> int:
    """Epochs spent over all trials: the cost that pruning saves."""
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


def best_overrides(
    trial: FrozenTrial, train: TrainConfig, precision: str = "float32", base: ModelConfig | None = None
) -> dict[str, dict[str, Any]]:
    """The params.yaml values that the best trial stands for (epochs stay the pipeline's own).

    Every key of the family the study searched, so none keeps the pipeline's value; the other
    family's keys are left alone, since they do not change the model.
    """
    model, tuned = configs_from_params(trial.params, train, precision=precision, base=base)
    if model.family in ("restorer", "sweep_ae"):
        keys = {"family", "restorer" if model.family == "restorer" else "sweep", "precision"}
    else:
        keys = set(ModelConfig.model_fields) - {"restorer", "sweep"}
    return {
        "model": model.model_dump(mode="json", include=keys),
        "train": {"learning_rate": float(f"{tuned.learning_rate:.4g}"), "batch_size": tuned.batch_size},
    }


def study_recipe(cfg: Config) -> dict[str, Any]:
    """What the study trained on beside the searched values: its preset, task and corruption
    strength. The best trial's line sets them first, so it trains the same task (a restorer cannot
    reconstruct) and, as `-S` values given after the preset, the tuned values win over the preset's."""
    recipe: dict[str, Any] = {"preset": cfg.preset, "task": cfg.task}
    if cfg.task == "deblur":
        recipe["corruption"] = {"blur_sigma": cfg.corruption.blur_sigma}
    elif cfg.task == "denoise":
        recipe["corruption"] = {"noise_sigma": cfg.corruption.noise_sigma}
    return recipe


def _flatten(values: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def exp_run_command(overrides: Mapping[str, Any]) -> str:
    """The `dvc exp run` line that trains the pipeline with these values."""
    sets = []
    for key, value in _flatten(overrides, ""):
        if isinstance(value, list):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
        sets.append(f"-S {shlex.quote(f'{key}={text}')}")
    return "dvc exp run " + " ".join(sets)


# Below this many complete trials Optuna's evaluators return equal shares, which mean nothing.
MIN_TRIALS_FOR_IMPORTANCE = 4


def _enough_for_importance(study: optuna.Study) -> bool:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= MIN_TRIALS_FOR_IMPORTANCE


def param_importances(study: optuna.Study, seed: int) -> dict[str, float]:
    """fANOVA importances of the complete trials (empty when there are too few to fit)."""
    if not _enough_for_importance(study):
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        return {
            k: float(v)
            for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()
        }
    except (ValueError, RuntimeError):
        return {}


def study_figures(study: optuna.Study, seed: int) -> dict[str, Figure]:
    """Optuna's matplotlib study plots; a plot the study cannot draw yet (too few trials) is skipped.

    Optuna draws through pyplot, which keeps every figure until it is closed; each one is closed
    in pyplot at once (it can still be saved), so a process that reports many studies (a test
    run, a notebook) does not pile them up.
    """
    from matplotlib import pyplot
    from optuna.visualization import matplotlib as plots

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    makers = {
        "optimization_history": lambda: plots.plot_optimization_history(study),
        "parallel_coordinate": lambda: plots.plot_parallel_coordinate(study),
        "intermediate_values": lambda: plots.plot_intermediate_values(study),
    }
    if _enough_for_importance(study):
        makers["param_importances"] = lambda: plots.plot_param_importances(study, evaluator=evaluator)
    result = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # matplotlib, on an axis with a single value
        for name, make in makers.items():
            try:
                axes = make()
            except (ValueError, RuntimeError):
                continue
            axis = axes.flat[0] if isinstance(axes, np.ndarray) else axes
            if name in ("optimization_history", "intermediate_values"):
                axis.set_ylabel("validation MSE")
            if name == "intermediate_values":
                axis.set_xlabel("epoch")
            figure = axis.figure
            pyplot.close(figure)
            figure.set_size_inches(9, 5.5)
            figure.tight_layout()
            result[name] = figure
    return result


def describe_trial(trial: FrozenTrial, best: FrozenTrial | None) -> str:
    """One progress line: number, state, epochs, time, value, params and the best so far."""
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0.0
    )
    value = (
        f"val MSE {trial.value:.5f}" if trial.value is not None else trial.user_attrs.get("error", "no value")
    )
    params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    epochs = len(trial.intermediate_values)
    line = f"trial {trial.number} {trial.state.name} after {epochs} epoch(s) in {seconds:.1f} s: {value}"
    line += f" | {params}"
    if best is not None:
        line += f" | best: trial {best.number}, {best.value:.5f}"
    return line
