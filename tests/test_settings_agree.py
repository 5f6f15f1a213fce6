"""A setting lives in conf/config.yaml and config.py; the other places that name it are checked
here against those two, so that no person has to keep them in step (docs/development.md, "Add a
setting"). tests/test_config.py checks dvc.yaml's params lists; this module checks the tuning
study's recorded settings: whatever changes what a trial trains is drawn by the trial or
recorded with its study, so a study never mixes trials trained under different settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import pytest

from lstm_ae.config import Config, parse_config
from lstm_ae.stages.tune import study_settings
from lstm_ae.tuning import search
from tests.test_config import dvc_stages, leaf_keys, mutated

# Each family's base: the restorer refuses task reconstruct.
FAMILIES = {"autoencoder": "reconstruct", "sweep_ae": "reconstruct", "restorer": "denoise"}
# The model keys that only the autoencoder family reads; the others read their own section.
AUTOENCODER_KEYS = ("encoder_widths", "decoder_widths", "head", "bidirectional", "row_index")
# Another valid value for each text setting (numbers are doubled or halved, flags flipped).
OTHER_TEXT = {
    "sweep_ae": "autoencoder",
    "autoencoder": "sweep_ae",
    "restorer": "sweep_ae",
    "dense": "lstm",
    "lstm": "dense",
    "cooldown": "cosine",
    "cosine": "cooldown",
    "constant": "cooldown",
    "float32": "mixed_bfloat16",
    "both": "rows",
    "reconstruct": "denoise",
    "denoise": "deblur",
}
LABELS = {"preset"}  # names what was laid over the settings; the settings themselves are checked


def family_params(family: str) -> dict[str, Any]:
    raw = mutated("model.family", family)
    raw["task"] = FAMILIES[family]
    return raw


def other_value(key: str, value: Any) -> Any:
    """A different value that still validates, so that only the recorded settings can tell."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2
    if isinstance(value, float):
        return value / 2
    if isinstance(value, list):
        return [item * 2 for item in value]
    if value is None:
        return 1.0
    assert value in OTHER_TEXT, f"{key}: add another valid value for {value!r} to OTHER_TEXT"
    return OTHER_TEXT[value]


def set_key(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


def trained_by_a_trial(cfg: Config) -> tuple[Any, ...]:
    """What one trial of a study under ``cfg`` trains (one fixed draw): the parts of its model
    settings that its family reads, its train settings, seed and input corruption."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    params = search.suggest_params(trial, cfg.tune.search, cfg.model.family)
    model, train = search.configs_from_params(
        params, cfg.train, cfg.tune.max_epochs, cfg.model.precision, cfg.model
    )
    read = model.model_dump(mode="json")
    if model.family != "autoencoder":
        read = {key: value for key, value in read.items() if key not in AUTOENCODER_KEYS}
    read = {key: value for key, value in read.items() if key not in ("restorer", "sweep")} | (
        {"section": read.get({"restorer": "restorer", "sweep_ae": "sweep"}.get(model.family, ""))}
    )
    return read, train.model_dump(mode="json"), cfg.seed, cfg.input_corruption.describe()


def train_stage_keys(family: str) -> list[str]:
    """Every params.yaml leaf the train stage reads (dvc.yaml lists whole sections too)."""
    listed = dvc_stages()["train"]["params"]
    leaves = leaf_keys(family_params(family))
    return [leaf for leaf in leaves if any(leaf == key or leaf.startswith(f"{key}.") for key in listed)]


def unrecorded(family: str, settings: Callable[[Config, str], dict] = study_settings) -> list[str]:
    """The train stage's keys whose change alters what a trial trains yet not the study's record."""
    base = parse_config(family_params(family))
    found = []
    for key in train_stage_keys(family):
        if key in LABELS:
            continue
        raw = family_params(family)
        node: Any = raw
        for part in key.split("."):
            node = node[part]
        changed = parse_config(set_key(raw, key, other_value(key, node)))
        recorded = settings(changed, "a" * 32) != settings(base, "a" * 32)
        if not recorded and trained_by_a_trial(changed) != trained_by_a_trial(base):
            found.append(key)
    return found


@pytest.mark.parametrize("family", FAMILIES)
def test_what_changes_a_trial_is_drawn_by_it_or_recorded_with_its_study(family: str) -> None:
    missing = unrecorded(family)
    assert not missing, (
        f"a {family} study would mix trials trained with different {', '.join(missing)}: "
        "record them in stages/tune.py's study_settings (or draw them in the search)"
    )


def test_the_check_finds_a_setting_left_out_of_the_record() -> None:
    """Control: with train.schedule dropped from the record, the check names it."""

    def without_schedule(cfg: Config, data_md5: str) -> dict:
        return {key: value for key, value in study_settings(cfg, data_md5).items() if key != "train.schedule"}

    assert "train.schedule" in unrecorded("sweep_ae", without_schedule)
