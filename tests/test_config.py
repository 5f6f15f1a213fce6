"""params.yaml -> validated settings: the real defaults, one-line errors naming the key, dvc.yaml's keys."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from lstm_ae.cli import STAGES
from lstm_ae.config import Config, ConfigError, load_config, parse_config

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


def test_real_params_give_the_sweep_autoencoder_with_the_reports_code_size_and_split() -> None:
    cfg = load_config(PARAMS)
    assert cfg.model.family == "sweep_ae" and cfg.model.sweep.code_size == 256
    assert (cfg.train.learning_rate, cfg.train.batch_size) == (0.006, 32)
    # The LSTM autoencoder's keys, for model.family autoencoder (the `autoencoder` preset).
    assert cfg.model.encoder_widths == (256,)
    assert cfg.model.decoder_widths == (512,)
    assert cfg.model.head == "dense"
    assert cfg.model.bidirectional is True and cfg.model.row_index is True
    assert cfg.train.schedule == "cooldown" and cfg.train.global_clipnorm is None
    assert cfg.model.latent_size == 256
    assert cfg.preprocess.val_fraction == 0.2
    assert cfg.seed == 42
    assert cfg.task == "reconstruct" and cfg.input_corruption.is_identity


def bad(key: str, value: Any, expected: str, *, id: str, named: str | None = None) -> Any:
    """A malformed case: set ``key`` to ``value``; the error must name ``named`` (default: key)."""
    return pytest.param(key, value, named or key, expected, id=id)


MALFORMED = [
    bad("train.learning_rate", -0.001, "greater than 0", id="lr-negative"),
    bad("train.learning_rate", 0, "greater than 0", id="lr-zero"),
    bad("train.learning_rate", 1.5, "less than or equal to 1", id="lr-above-1"),
    bad("model.encoder_widths", [], "at least 1 item", id="widths-empty"),
    bad("model.encoder_widths", [512, 0], "greater than 0", id="width-zero", named="model.encoder_widths.1"),
    bad("model.decoder_widths", [-8], "greater than 0", id="width-negative", named="model.decoder_widths.0"),
    bad("model.encoder_widths", "512,256", "valid tuple", id="widths-string"),
    bad("preprocess.val_fraction", 0, "greater than 0", id="val-0"),
    bad("preprocess.val_fraction", 1, "less than 1", id="val-1"),
    bad("preprocess.val_fraction", 1.5, "less than 1", id="val-1.5"),
    bad("preprocess.val_fraction", -0.1, "greater than 0", id="val-negative"),
    bad("trian", {"max_epochs": 3}, "unknown key", id="unknown-section"),
    bad("train.lr", 0.001, "unknown key", id="unknown-nested-key"),
    bad("eda", DELETE, "missing", id="missing-section"),
    bad("task", "inpaint", "'reconstruct', 'deblur' or 'denoise'", id="task-unknown"),
    bad("task", DELETE, "missing", id="task-missing"),
    bad("corruption.noise_sigma", 0, "greater than 0", id="noise-zero"),
    bad("corruption.noise_sigma", 2, "less than or equal to 1", id="noise-above-1"),
    bad("corruption.blur_sigma", -1, "greater than 0", id="blur-negative"),
    bad("corruption.blur_sigma", "wide", "expected a number", id="blur-string"),
    bad("fetch.md5", DELETE, "missing", id="missing-key"),
    bad("train.batch_size", "big", "valid integer", id="batch-string"),
    bad("train.batch_size", 0, "greater than 0", id="batch-zero"),
    bad("model.head", "conv", "'lstm' or 'dense'", id="head-unknown"),
    bad("model.bidirectional", 1, "valid boolean", id="bidirectional-int"),
    bad("model.bidirectional", "both", "valid boolean", id="bidirectional-word"),
    bad(
        "model.encoder_widths",
        [255],
        "model.encoder_widths must hold even widths (it has 255)",
        id="bidirectional-odd-width",
        named="model.bidirectional",
    ),
    bad(
        "model.decoder_widths",
        [512, 7],
        "model.decoder_widths must hold even widths (it has 7)",
        id="bidirectional-odd-decoder-width",
        named="model.bidirectional",
    ),
    bad("model.row_index", "yes", "valid boolean", id="row-index-word"),
    bad("model.precision", "float16", "'float32' or 'mixed_bfloat16'", id="precision-unknown"),
    bad(
        "tune.search.row_index",
        [0, 1],
        "valid boolean",
        id="choice-row-index",
        named="tune.search.row_index.0",
    ),
    bad("train.schedule", "linear", "'constant', 'cosine' or 'cooldown'", id="schedule-unknown"),
    bad("train.global_clipnorm", 0, "greater than 0", id="clipnorm-zero"),
    bad("train.global_clipnorm", "off", "expected a number", id="clipnorm-word"),
    bad("fetch.md5", "z" * 32, "32 hexadecimal", id="md5-not-hex"),
    bad("fetch.md5", "c58f30108f", "32 hexadecimal", id="md5-short"),
    bad("train.max_epochs", 0, "greater than 0", id="epochs-zero"),
    bad("train.patience", -1, "greater than 0", id="patience-negative"),
    bad("seed", -1, "greater than or equal to 0", id="seed-negative"),
    bad("train.batch_size", True, "valid integer", id="batch-bool"),
    bad("train.max_epochs", 3.0, "valid integer", id="epochs-float"),
    bad("train.learning_rate", True, "not true/false", id="lr-bool"),
    bad("train.learning_rate", float("nan"), "finite number", id="lr-nan"),
    bad("fetch.timeout_s", float("inf"), "finite number", id="timeout-inf"),
    bad("fetch.url", "   ", "a URL, a file:// URL or a path", id="url-blank"),
    bad("tune", DELETE, "missing", id="tune-missing"),
    bad("tune.n_trials", 0, "greater than or equal to 1", id="trials-zero"),
    bad("tune.workers", 0, "greater than or equal to 1", id="workers-zero"),
    bad("tune.trials_per_process", 0, "greater than or equal to 1", id="trials-per-process-zero"),
    bad("tune.timeout_s", -5, "greater than or equal to 0", id="timeout-negative"),
    bad("tune.pruner", "asha", "'median', 'hyperband' or 'none'", id="pruner-unknown"),
    bad("tune.study_name", "my study", "match pattern", id="study-name-space"),
    bad("tune.storage", "", "at least 1 character", id="storage-empty"),
    bad("tune.max_epochs", 0, "greater than or equal to 1", id="trial-epochs-zero"),
    bad("tune.search.latent_size", [], "at least 1 item", id="choices-empty"),
    bad("tune.search.latent_size", [64, 64], "must not repeat", id="choices-repeat"),
    bad(
        "tune.search.encoder_width",
        [0],
        "greater than 0",
        id="choice-width-zero",
        named="tune.search.encoder_width.0",
    ),
    bad(
        "tune.search.encoder_layers",
        [5],
        "less than or equal to 4",
        id="layers-5",
        named="tune.search.encoder_layers.0",
    ),
    bad(
        "tune.search.decoder_layers",
        [0],
        "greater than or equal to 1",
        id="decoder-layers-0",
        named="tune.search.decoder_layers.0",
    ),
    bad(
        "tune.search.head", ["lstm", "gru"], "'lstm' or 'dense'", id="choice-head", named="tune.search.head.1"
    ),
    bad(
        "tune.search.learning_rate",
        {"low": 0.01, "high": 0.001},
        "must be below high",
        id="lr-range-reversed",
    ),
    bad(
        "tune.search.learning_rate",
        {"low": 0, "high": 0.001},
        "greater than 0",
        id="lr-range-zero",
        named="tune.search.learning_rate.low",
    ),
    bad("tune.search.learning_rate", [0.001, 0.01], "valid dictionary", id="lr-range-list"),
    bad("tune.search.dropout", [0.1], "unknown key", id="search-unknown-param"),
    bad(
        "tune.search.bidirectional",
        ["yes", False],
        "valid boolean",
        id="choice-bidirectional",
        named="tune.search.bidirectional.0",
    ),
    bad(
        "tune.search.decoder_width",
        [128, 129],
        "tune.search.decoder_width must hold even widths (it has 129)",
        id="search-odd-width",
        named="tune.search.bidirectional",
    ),
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


def test_the_restorer_on_task_reconstruct_is_refused_in_one_line() -> None:
    raw = mutated("model.family", "restorer")
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert_one_line(error, "model.family", "would learn the identity", "set task to deblur or denoise")
    assert ": : " not in str(error.value)  # a check across sections has no key of its own to print
    assert str(error.value).startswith("params.yaml: model.family restorer adds a correction")
    raw["task"] = "denoise"
    assert parse_config(raw).model.family == "restorer"


@pytest.mark.parametrize("via", ["parse_config", "load_config"])
def test_top_level_list_is_refused(via: str, tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("- seed\n- fetch\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        if via == "parse_config":
            parse_config(["seed", "fetch"])
        else:
            load_config(path)
    assert_one_line(error, "expected a mapping", "got list")


def test_yaml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 42\ntrain:\n  learning_rate: [0.001\n  batch_size: 128\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert_one_line(error, str(path), "YAML error", "line 4")


def test_renamed_key_names_the_typo_first() -> None:
    raw = mutated("train.patience", DELETE)
    raw["train"]["patients"] = 10
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert_one_line(error, "train.patients: unknown key", "train.patience: missing")
    assert str(error.value).index("train.patients") < str(error.value).index("train.patience")


def test_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text(encoding="utf-8") + "seed: 7\n", encoding="utf-8")
    lines = path.read_text(encoding="utf-8").count("\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert_one_line(error, "'seed' appears twice", f"line {lines}")


def test_empty_file_lists_the_sections(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("# nothing here\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert_one_line(error, "empty", "seed, task, corruption, fetch, preprocess, eda, model, train, evaluate")


def test_missing_file_says_where_to_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "nope.yaml")
    assert_one_line(error, "nope.yaml", "not found", "--params")


def test_the_reports_recipe_keeps_the_defaults_code_size() -> None:
    # The benchmarks compare the report's model with ours at equal code size.
    report = load_config(PARAMS, preset="report")
    REPORT_MODEL, REPORT_TRAIN = report.model, report.train  # the names the benchmarks once used
    assert REPORT_MODEL.latent_size == load_config(PARAMS).model.latent_size == 256
    assert (REPORT_MODEL.encoder_widths, REPORT_MODEL.decoder_widths, REPORT_MODEL.head) == (
        (512, 256),
        (256,),
        "lstm",
    )
    assert (
        REPORT_MODEL.bidirectional is False
        and REPORT_MODEL.row_index is False
        and REPORT_TRAIN.schedule == "constant"
    )
    assert REPORT_MODEL.precision == "float32"
    assert (REPORT_TRAIN.learning_rate, REPORT_TRAIN.batch_size, REPORT_TRAIN.max_epochs) == (1e-4, 128, 200)


def test_learning_rate_written_as_1e_minus_4_is_a_number(tmp_path: Path) -> None:
    # YAML 1.1 reads `1e-4` (no dot) as a string; it must still mean 0.0001.
    text = re.sub(r"learning_rate: [0-9.]+", "learning_rate: 1e-4", PARAMS.read_text(encoding="utf-8"))
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
    assert cfg.train.learning_rate == 0.006


@settings(max_examples=50, deadline=None)
@given(
    learning_rate=st.floats(min_value=0, max_value=1, exclude_min=True),
    widths=st.lists(st.integers(min_value=1, max_value=4096), min_size=1, max_size=4),
)
def test_any_positive_rate_and_widths_validate(learning_rate: float, widths: list[int]) -> None:
    raw = mutated("train.learning_rate", learning_rate)
    raw["model"]["encoder_widths"] = widths
    raw["model"]["bidirectional"] = False  # any width; bidirectional LSTMs need even ones (MALFORMED)
    raw["model"]["family"] = "autoencoder"  # whose code size is the last encoder width
    cfg = parse_config(raw)
    assert cfg.train.learning_rate == learning_rate
    assert cfg.model.encoder_widths == tuple(widths)
    assert cfg.model.latent_size == widths[-1]


def dvc_stages() -> dict[str, Any]:
    """The pipeline's stages and the tuning stage, which lives in its own dvc.yaml."""
    stages = {}
    for path in (ROOT / "dvc.yaml", ROOT / "tuning" / "dvc.yaml"):
        stages.update(yaml.safe_load(path.read_text(encoding="utf-8"))["stages"])
    return stages


def test_every_dvc_params_key_exists_in_params_yaml() -> None:
    params = real_params()
    for stage, spec in dvc_stages().items():
        for key in spec.get("params", []):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{stage}: {key} is not in params.yaml"
                node = node[part]


def test_dvc_stages_are_the_cli_stages() -> None:
    assert set(dvc_stages()) == {"fetch", "preprocess", "eda", "train", "evaluate", "tune"}
    assert set(dvc_stages()) <= set(STAGES)


def test_plain_dvc_repro_never_starts_a_study() -> None:
    """`dvc repro` reads only the root dvc.yaml; the tune stage lives in tuning/dvc.yaml."""
    root_stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert "tune" not in root_stages


def test_every_declared_metrics_file_is_in_the_repository() -> None:
    """`dvc metrics show` on a fresh clone warns "failed to load some metrics" for a declared
    metrics file that only a later run writes (the tuning summary was one)."""
    for name, spec in dvc_stages().items():
        for entry in spec.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            assert (ROOT / path).is_file(), f"stage {name}: metrics file {path} is not committed"


def test_every_params_yaml_key_is_read_by_a_stage() -> None:
    listed = [key for spec in dvc_stages().values() for key in spec.get("params", [])]
    for leaf in leaf_keys(real_params()):
        assert any(leaf == key or leaf.startswith(f"{key}.") for key in listed), f"{leaf} is read by no stage"


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(-5, 5000), st.text(max_size=3)), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(leaf_keys(real_params())), value=st.one_of(ANY_VALUE, st.just(DELETE)))
def test_any_single_bad_value_is_one_line_naming_its_key(key: str, value: Any) -> None:
    """Whatever one key holds, the loader either accepts it or says, on one line, which key is
    wrong; nothing else (a TypeError deep in a stage, a traceback) ever comes out."""
    try:
        parse_config(mutated(key, value))
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        # A check across keys (low below high) names the section and the keys inside it.
        parent, _, leaf = key.rpartition(".")
        named = key in message or (f"{parent}: " in message and f"{leaf} (" in message)
        assert message.startswith("params.yaml: ") and named, message


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(min_value=0),
    edit=st.sampled_from(["delete", "insert"]),
    byte=st.binary(min_size=1, max_size=1),
)
def test_any_one_byte_edit_of_params_yaml_loads_or_fails_in_one_line(
    position: int, edit: str, byte: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A typo anywhere in the file, also one that is no longer UTF-8: a valid config, or
    ConfigError on one line naming the file."""
    data = PARAMS.read_bytes()
    position %= len(data)
    data = data[:position] + (byte if edit == "insert" else b"") + data[position + (edit == "delete") :]
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")


def test_a_file_that_is_not_utf8_names_the_byte_and_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(PARAMS.read_bytes().replace(b"seed: 42", b"seed: 4\xe92", 1))
    with pytest.raises(ConfigError, match=r"not UTF-8 text: byte 0xe9 on line \d+; save it as UTF-8"):
        load_config(path)


def _defaults(section: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Every key of a config section that has a default in config.py, dotted, with that default."""
    found = {}
    for name, field in section.model_fields.items():
        key = f"{prefix}{name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found |= _defaults(field.annotation, f"{key}.")
        if not field.is_required():
            value = field.get_default()
            found[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return found


def test_every_default_in_config_py_is_the_value_of_conf_config_yaml() -> None:
    # One source for each value: code that builds a section without a key gets the settings' value.
    settings = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text(encoding="utf-8"))
    defaults = _defaults(Config)
    assert {"model.bidirectional", "train.schedule", "tune.search.row_index"} <= defaults.keys()
    for key, default in defaults.items():
        value = settings
        for part in key.split("."):
            value = value[part]
        expected = [*value] if isinstance(value, list) else value
        got = [*default] if isinstance(default, tuple) else default
        assert got == expected, f"{key}: config.py says {default!r}, conf/config.yaml {value!r}"


def test_params_yaml_is_conf_config_yaml_composed_as_dvc_exp_run_does(tmp_path: Path) -> None:
    # What `dvc exp run` without -S writes must be what is committed, or the first experiment of a
    # clone would change settings nobody touched.
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(ROOT / "conf"), None, "config", str(ROOT), [])
    assert out.read_text(encoding="utf-8") == PARAMS.read_text(encoding="utf-8")
