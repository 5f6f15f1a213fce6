"""conf/preset/*.yaml: each recipe loads, says what it promises, composes as DVC composes it, and a
bad preset fails in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import compose_and_dump

from lstm_ae.cli import build_parser
from lstm_ae.config import Config, ConfigError, load_config, parse_config
from lstm_ae.stages.evaluate import subset_suffix
from lstm_ae.tracking.registry import registered_name

ROOT = Path(__file__).parents[1]
PARAMS = ROOT / "params.yaml"
PRESETS = ROOT / "conf" / "preset"
NAMES = sorted(p.stem for p in PRESETS.glob("*.yaml"))


def project(tmp_path: Path, preset_text: str | None = None, name: str = "mine") -> Path:
    """params.yaml and conf/ copied into tmp_path, with conf/preset/<name>.yaml written if given."""
    shutil.copy(PARAMS, tmp_path / "params.yaml")
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    if preset_text is not None:
        (tmp_path / "conf" / "preset" / f"{name}.yaml").write_text(preset_text, encoding="utf-8")
    return tmp_path / "params.yaml"


def composed(tmp_path: Path, overrides: list[str]) -> Config:
    """What `dvc exp run -S ...` writes to params.yaml (DVC's own Hydra call), loaded."""
    out = tmp_path / "composed.yaml"
    compose_and_dump(out, str(ROOT / "conf"), None, "config", str(ROOT), overrides)
    return parse_config(yaml.safe_load(out.read_text(encoding="utf-8")))


def test_the_named_presets_exist_and_default_is_params_yaml_itself() -> None:
    assert {"report", "default", "autoencoder", "sweep_ae", "long", "smoke", "denoise", "deblur"} <= set(
        NAMES
    )
    plain = load_config(PARAMS)
    assert plain.preset == "default"
    assert load_config(PARAMS, preset="default") == plain


def test_report_is_the_reports_exact_recipe() -> None:
    cfg = load_config(PARAMS, preset="report")
    assert cfg.preset == "report" and cfg.model.family == "autoencoder"
    assert (cfg.model.encoder_widths, cfg.model.decoder_widths, cfg.model.head) == (
        (512, 256),
        (256,),
        "lstm",
    )
    assert not cfg.model.bidirectional and not cfg.model.row_index and cfg.model.precision == "float32"
    assert (cfg.train.learning_rate, cfg.train.batch_size, cfg.train.max_epochs) == (1e-4, 128, 200)
    assert (cfg.train.patience, cfg.train.schedule, cfg.train.global_clipnorm) == (10, "constant", None)
    # Everything the preset does not name is params.yaml's: the report's data, split and seed.
    assert (cfg.seed, cfg.preprocess.val_fraction, cfg.task) == (42, 0.2, "reconstruct")


def test_long_is_the_lstm_autoencoder_on_the_clipped_long_budget() -> None:
    autoencoder, long = load_config(PARAMS, preset="autoencoder"), load_config(PARAMS, preset="long")
    assert long.model == autoencoder.model and long.model.family == "autoencoder"
    assert (long.train.max_epochs, long.train.batch_size, long.train.global_clipnorm) == (64, 128, 0.05)
    assert (
        long.train.schedule == autoencoder.train.schedule
        and long.train.learning_rate == autoencoder.train.learning_rate
    )


def test_the_autoencoder_preset_is_the_lstm_default_of_before_and_sweep_ae_the_30_minute_recipe() -> None:
    """`autoencoder`: the tuned LSTM autoencoder as it was the default (8 epochs, batch 64, 0.003);
    `sweep_ae`: the default family on the 30-minute budget, two sweep blocks, the code fixed at PCA."""
    default = load_config(PARAMS)
    old = load_config(PARAMS, preset="autoencoder")
    assert (old.model.family, old.model.encoder_widths, old.model.decoder_widths) == (
        "autoencoder",
        (256,),
        (512,),
    )
    assert (old.train.max_epochs, old.train.batch_size, old.train.learning_rate) == (8, 64, 0.003)
    sweep = load_config(PARAMS, preset="sweep_ae")
    two_blocks = default.model.sweep.model_copy(update={"blocks": 2, "linear_rate": 0.0})
    assert sweep.model == default.model.model_copy(update={"sweep": two_blocks})
    assert sweep.model.family == "sweep_ae"
    assert (sweep.train.max_epochs, sweep.train.batch_size, sweep.train.learning_rate) == (10, 32, 0.006)
    assert registered_name(sweep.input_corruption, sweep.model.family) == "cifar10-lstm-sweep-autoencoder"


def test_smoke_limits_the_real_data_and_registers_apart() -> None:
    cfg = load_config(PARAMS, preset="smoke")
    assert (cfg.preprocess.max_train_images, cfg.preprocess.max_test_images) == (2000, 500)
    assert cfg.train.max_epochs <= 2 and cfg.model == load_config(PARAMS).model
    assert subset_suffix(cfg) == "-subset2000-500"
    assert subset_suffix(load_config(PARAMS)) == ""


@pytest.mark.parametrize("task", ["denoise", "deblur"])
def test_each_restoration_preset_trains_the_restorer_and_registers_it_apart(task) -> None:
    cfg = load_config(PARAMS, preset=task)
    assert (cfg.task, cfg.model.family, cfg.model.restorer.sweeps) == (task, "restorer", True)
    name = registered_name(cfg.input_corruption, cfg.model.family)
    assert name == f"cifar10-lstm-restorer-{task}-sigma{cfg.input_corruption.strength:g}"
    assert (
        registered_name(cfg.input_corruption)
        == f"cifar10-lstm-autoencoder-{task}-sigma{cfg.input_corruption.strength:g}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_a_preset_on_the_command_line_is_what_dvc_composes_for_it(tmp_path: Path, name: str) -> None:
    # `lstm-ae train --preset NAME` and `dvc exp run -S preset=NAME` must run the same settings.
    assert load_config(PARAMS, preset=name) == composed(tmp_path, [f"preset={name}"])


def test_a_value_set_on_top_of_a_preset_wins_in_both(tmp_path: Path) -> None:
    by_dvc = composed(tmp_path, ["preset=smoke", "train.max_epochs=6", "model.encoder_widths=[32]"])
    by_cli = load_config(PARAMS, "smoke", {"train.max_epochs": 6, "model.encoder_widths": [32]})
    assert by_dvc == by_cli
    assert (by_cli.train.max_epochs, by_cli.model.encoder_widths, by_cli.preset) == (6, (32,), "smoke")
    assert by_cli.preprocess.max_train_images == 2000  # the rest of the preset still holds


def test_the_preset_key_in_params_yaml_only_records_the_recipe(tmp_path: Path) -> None:
    # params.yaml holds the composed values already; laying its preset over them again would undo
    # a `-S` given on top of the preset (the preset's 2 epochs replacing the user's 6).
    params = project(tmp_path)
    text = (
        params.read_text()
        .replace("preset: default", "preset: smoke")
        .replace("max_epochs: 12", "max_epochs: 6")
    )
    params.write_text(text, encoding="utf-8")
    cfg = load_config(params)
    assert (cfg.preset, cfg.train.max_epochs, cfg.model.encoder_widths) == ("smoke", 6, (256,))


def test_a_preset_replaces_only_the_keys_it_names(tmp_path: Path) -> None:
    params = project(tmp_path, "train:\n  max_epochs: 3\n")
    cfg, base = load_config(params, preset="mine"), load_config(params)
    assert cfg.train.max_epochs == 3 and cfg.preset == "mine"
    assert cfg.model_dump(exclude={"preset", "train"}) == base.model_dump(exclude={"preset", "train"})
    assert cfg.train.model_dump(exclude={"max_epochs"}) == base.train.model_dump(exclude={"max_epochs"})


@pytest.mark.parametrize(
    ("preset", "text", "expected"),
    [
        (
            "nope",
            None,
            (
                "preset: no preset 'nope'; the presets are: autoencoder, deblur, default, denoise, long, "
                "report, smoke, sweep_ae"
            ),
        ),
        ("mine", "train:\n  max_epoch: 3\n", "mine.yaml: train.max_epoch: not a key of params.yaml"),
        ("mine", "train:\n  max_epochs: -3\n", "train.max_epochs: Input should be greater than 0"),
        ("mine", "- train\n", "mine.yaml: expected a mapping of params.yaml sections, got list"),
        ("mine", "preset: report\n", "mine.yaml: preset: must be the file's own name, 'mine' (got 'report')"),
        ("mine", "train: [\n", "mine.yaml: YAML error at line"),
        ("../params", None, "preset: expected the name of a file in "),
    ],
)
def test_a_bad_preset_fails_in_one_line_naming_the_file_and_key(
    tmp_path: Path, preset: str, text: str | None, expected: str
) -> None:
    params = project(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(params, preset=preset)
    assert "\n" not in str(error.value) and expected in str(error.value), str(error.value)


def test_a_value_error_under_a_preset_names_both_files(tmp_path: Path) -> None:
    params = project(tmp_path, "train:\n  learning_rate: 2\n")
    with pytest.raises(ConfigError, match=r"params.yaml with .*conf/preset/mine.yaml: train.learning_rate: "):
        load_config(params, preset="mine")


def test_every_stage_command_takes_a_preset() -> None:
    parser = build_parser()
    for stage in ("fetch", "preprocess", "eda", "train", "evaluate", "tune"):
        assert parser.parse_args([stage, "--preset", "smoke"]).preset == "smoke"


def test_presets_name_only_keys_that_params_yaml_has_and_their_own_name() -> None:
    for path in PRESETS.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# @package _global_\n"), f"{path}: Hydra must lay it at the top level"
        assert yaml.safe_load(text)["preset"] == path.stem, path
        load_config(PARAMS, preset=path.stem)  # raises, naming the key, if one is unknown
