"""params.yaml -> validated settings: the real defaults, one-line errors naming the key, dvc.yaml's keys."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lstm_ae.cli import STAGES
from lstm_ae.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).parents[1]
PARAMS = ROOT / "params.yaml"
DELETE = object()  # a mutation value meaning "remove this key"


def real_params() -> dict[str, Any]:
    return yaml.safe_load(PARAMS.read_text(encoding="utf-8"))


def mutated(key: str, value: Any) -> dict[str, Any]:
    """A deep copy of the real params with the dotted ``key`` set to ``value`` (or removed)."""
    raw = copy.deepcopy(real_params())
    *parents, last = key.split(".")
    section = raw
    for part in parents:
        section = section[part]
    if value is DELETE:
        del section[last]
    else:
        section[last] = value
    return raw


def leaf_keys(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for name, value in mapping.items():
        if isinstance(value, dict):
            keys += leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_real_params_give_the_reports_defaults() -> None:
    cfg = load_config(PARAMS)
    assert cfg.model.encoder_widths == (512, 256)
    assert cfg.model.decoder_widths == (256,)
    assert cfg.model.head == "lstm"
    assert cfg.model.latent_size == 256
    assert cfg.preprocess.val_fraction == 0.2
    assert cfg.seed == 42


# (dotted key to change, new value, key the message must name, words saying what is expected)
MALFORMED = [
    pytest.param("train.learning_rate", -0.001, "train.learning_rate", "greater than 0", id="lr-negative"),
    pytest.param("train.learning_rate", 0, "train.learning_rate", "greater than 0", id="lr-zero"),
    pytest.param("train.learning_rate", 1.5, "train.learning_rate", "less than or equal to 1", id="lr-above-1"),
    pytest.param("model.encoder_widths", [], "model.encoder_widths", "at least 1 item", id="widths-empty"),
    pytest.param("model.encoder_widths", [512, 0], "model.encoder_widths.1", "greater than 0", id="width-zero"),
    pytest.param("model.decoder_widths", [-8], "model.decoder_widths.0", "greater than 0", id="width-negative"),
    pytest.param("model.encoder_widths", "512,256", "model.encoder_widths", "valid tuple", id="widths-string"),
    pytest.param("preprocess.val_fraction", 0, "preprocess.val_fraction", "greater than 0", id="val-0"),
    pytest.param("preprocess.val_fraction", 1, "preprocess.val_fraction", "less than 1", id="val-1"),
    pytest.param("preprocess.val_fraction", 1.5, "preprocess.val_fraction", "less than 1", id="val-1.5"),
    pytest.param("preprocess.val_fraction", -0.1, "preprocess.val_fraction", "greater than 0", id="val-negative"),
    pytest.param("trian", {"max_epochs": 3}, "trian", "unknown key", id="unknown-section"),
    pytest.param("train.lr", 0.001, "train.lr", "unknown key", id="unknown-nested-key"),
    pytest.param("eda", DELETE, "eda", "missing", id="missing-section"),
    pytest.param("fetch.md5", DELETE, "fetch.md5", "missing", id="missing-key"),
    pytest.param("train.batch_size", "big", "train.batch_size", "valid integer", id="batch-string"),
    pytest.param("train.batch_size", 0, "train.batch_size", "greater than 0", id="batch-zero"),
    pytest.param("model.head", "conv", "model.head", "'lstm' or 'dense'", id="head-unknown"),
    pytest.param("fetch.md5", "z" * 32, "fetch.md5", "32 hexadecimal", id="md5-not-hex"),
    pytest.param("fetch.md5", "c58f30108f", "fetch.md5", "32 hexadecimal", id="md5-short"),
    pytest.param("train.max_epochs", 0, "train.max_epochs", "greater than 0", id="epochs-zero"),
    pytest.param("train.patience", -1, "train.patience", "greater than 0", id="patience-negative"),
    pytest.param("seed", -1, "seed", "greater than or equal to 0", id="seed-negative"),
]


def assert_one_line(error: pytest.ExceptionInfo[ConfigError], *expected: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for words in expected:
        assert words in message, message


@pytest.mark.parametrize("via", ["parse_config", "load_config"])
@pytest.mark.parametrize(("key", "value", "named", "expected"), MALFORMED)
def test_malformed_params_fail_with_one_line_naming_the_key(
    via: str, key: str, value: Any, named: str, expected: str, tmp_path: Path
) -> None:
    raw = mutated(key, value)
    with pytest.raises(ConfigError) as error:
        if via == "parse_config":
            parse_config(raw)
        else:
            path = tmp_path / "params.yaml"
            path.write_text(yaml.safe_dump(raw), encoding="utf-8")
            load_config(path)
    assert_one_line(error, f": {named}: ", expected)


@pytest.mark.parametrize("via", ["parse_config", "load_config"])
def test_top_level_list_is_refused(via: str, tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("- seed\n- fetch\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        parse_config(["seed", "fetch"]) if via == "parse_config" else load_config(path)
    assert_one_line(error, "expected a mapping", "got list")


def test_yaml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 42\ntrain:\n  learning_rate: [0.001\n  batch_size: 128\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert_one_line(error, str(path), "YAML syntax error", "line 4")


def test_missing_file_says_where_to_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "nope.yaml")
    assert_one_line(error, "nope.yaml", "not found", "--params")


def test_learning_rate_written_as_1e_minus_4_is_a_number(tmp_path: Path) -> None:
    # YAML 1.1 reads `1e-4` (no dot) as a string; it must still mean 0.0001.
    text = PARAMS.read_text(encoding="utf-8").replace("learning_rate: 0.001", "learning_rate: 1e-4")
    assert yaml.safe_load(text)["train"]["learning_rate"] == "1e-4"
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path).train.learning_rate == pytest.approx(1e-4)


def test_md5_is_lower_cased() -> None:
    cfg = parse_config(mutated("fetch.md5", "C58F30108F718F92721AF3B95E74349A"))
    assert cfg.fetch.md5 == "c58f30108f718f92721af3b95e74349a"


def test_settings_are_frozen() -> None:
    cfg = load_config(PARAMS)
    with pytest.raises(ValidationError):
        cfg.train.learning_rate = 0.5
    with pytest.raises(ValidationError):
        cfg.seed = 1
    assert cfg.train.learning_rate == 0.001


@settings(max_examples=50, deadline=None)
@given(
    learning_rate=st.floats(min_value=0, max_value=1, exclude_min=True),
    widths=st.lists(st.integers(min_value=1, max_value=4096), min_size=1, max_size=4),
)
def test_any_positive_rate_and_widths_validate(learning_rate: float, widths: list[int]) -> None:
    raw = mutated("train.learning_rate", learning_rate)
    raw["model"]["encoder_widths"] = widths
    cfg = parse_config(raw)
    assert cfg.train.learning_rate == learning_rate
    assert cfg.model.encoder_widths == tuple(widths)
    assert cfg.model.latent_size == widths[-1]


def dvc_stages() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_every_dvc_params_key_exists_in_params_yaml() -> None:
    params = real_params()
    for stage, spec in dvc_stages().items():
        for key in spec.get("params", []):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{stage}: {key} is not in params.yaml"
                node = node[part]


def test_dvc_stages_are_the_cli_stages() -> None:
    assert set(dvc_stages()) <= {"fetch", "preprocess", "eda", "train", "evaluate"}
    assert set(dvc_stages()) <= set(STAGES)


def test_every_params_yaml_key_is_read_by_a_stage() -> None:
    listed = [key for spec in dvc_stages().values() for key in spec.get("params", [])]
    for leaf in leaf_keys(real_params()):
        assert any(leaf == key or leaf.startswith(f"{key}.") for key in listed), f"{leaf} is read by no stage"
