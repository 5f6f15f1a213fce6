"""The search space and the study's bookkeeping: trial -> configs, storage, best-trial command,
study figures."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from dvc.utils.hydra import compose_and_dump
from matplotlib import pyplot
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from lstm_ae.config import load_config, parse_config
from lstm_ae.model.build import build_model
from lstm_ae.tuning import search

ROOT = Path(__file__).parents[2]
CFG = load_config(ROOT / "params.yaml")

PARAMS = {
    "latent_size": 256,
    "encoder_layers": 1,
    "encoder_width": 512,
    "decoder_layers": 2,
    "decoder_width": 128,
    "learning_rate": 0.0012345,
    "batch_size": 128,
    "head": "dense",
    "bidirectional": True,
    "row_index": True,
}


def test_a_trial_becomes_the_pipelines_model_and_train_configs() -> None:
    model, train = search.configs_from_params(PARAMS, CFG.train, max_epochs=3)
    assert model.encoder_widths == (512, 256)
    assert model.latent_size == 256
    assert model.decoder_widths == (128, 128)
    assert model.head == "dense" and model.bidirectional is True and model.row_index is True
    assert (train.learning_rate, train.batch_size, train.max_epochs) == (0.0012345, 128, 3)
    assert (train.patience, train.schedule) == (CFG.train.patience, CFG.train.schedule)
    clipped = CFG.train.model_copy(update={"global_clipnorm": 0.05})
    assert search.configs_from_params(PARAMS, clipped)[1].global_clipnorm == 0.05  # trials inherit the clip
    assert model.precision == "float32"


def test_trials_and_the_best_trials_line_compute_in_the_pipelines_precision() -> None:
    model, _ = search.configs_from_params(PARAMS, CFG.train, precision="mixed_bfloat16")
    assert model.precision == "mixed_bfloat16"
    trial = create_trial(
        value=0.01, params=PARAMS, distributions={k: CategoricalDistribution([v]) for k, v in PARAMS.items()}
    )
    assert search.best_overrides(trial, CFG.train, "mixed_bfloat16")["model"]["precision"] == "mixed_bfloat16"


def test_a_trial_from_before_the_bidirectional_and_row_index_choices_has_neither() -> None:
    old = {key: value for key, value in PARAMS.items() if key not in ("bidirectional", "row_index")}
    model, _ = search.configs_from_params(old, CFG.train)
    assert model.bidirectional is False and model.row_index is False


def test_no_hidden_encoder_layer_leaves_the_latent_lstm_alone() -> None:
    model, _ = search.configs_from_params({**PARAMS, "encoder_layers": 0}, CFG.train)
    assert model.encoder_widths == (256,)


def test_suggest_params_stays_inside_the_search_space() -> None:
    space = CFG.tune.search
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = search.suggest_params(trial, space)
        assert params["latent_size"] in space.latent_size
        assert params["head"] in space.head
        assert params["bidirectional"] in space.bidirectional
        assert params["row_index"] in space.row_index
        assert space.learning_rate.low <= params["learning_rate"] <= space.learning_rate.high
        study.tell(trial, 0.0)
    distribution = study.trials[0].distributions["learning_rate"]
    assert isinstance(distribution, FloatDistribution) and distribution.log


def test_the_seeded_sampler_proposes_the_same_trials_again() -> None:
    def proposals() -> list[dict]:
        study = optuna.create_study(sampler=search.make_sampler(42))
        study.optimize(lambda t: len(str(search.suggest_params(t, CFG.tune.search))), n_trials=5)
        return [t.params for t in study.trials]

    assert proposals() == proposals()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_pruner_by_name(name: str, kind: type) -> None:
    assert isinstance(search.make_pruner(name, max_epochs=3), kind)


def test_a_path_is_a_journal_file_in_the_project(tmp_path: Path) -> None:
    storage = search.open_storage("studies/journal.log", tmp_path)
    optuna.create_study(study_name="s", storage=storage)
    assert (tmp_path / "studies" / "journal.log").stat().st_size > 0


def test_a_url_is_a_database_with_optunas_heartbeat(tmp_path: Path) -> None:
    def on_stale(study, trial):
        pass

    storage = search.open_storage(
        f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path, heartbeat_s=7, on_stale=on_stale
    )
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.get_heartbeat_interval() == 7 and storage.get_heartbeat_stale_trial_callback() is on_stale


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("nosuchdb://u@host/db", "Can't load plugin"),
        (f"sqlite:////{'nonexistent-dir/' * 2}x.db", "unable to open"),
    ],
)
def test_a_database_that_cannot_be_opened_is_one_line_naming_tune_storage(
    url: str, reason: str, tmp_path: Path
) -> None:
    with pytest.raises(search.StorageError) as caught:
        search.open_storage(url.replace("u@", "u:secret@"), tmp_path)
    message = str(caught.value)
    assert message.startswith("tune.storage: cannot open") and reason in message
    assert "\n" not in message and "secret" not in message


def test_redact_hides_the_password_of_a_storage_url() -> None:
    assert search.redact("postgresql://me:s3cret@db/optuna") == "postgresql://me:***@db/optuna"
    assert search.redact("optuna-journal.log") == "optuna-journal.log"


def finished_study(values: list[float | None], states: list[TrialState] | None = None) -> optuna.Study:
    """A study of synthetic trials over the real search space's parameter names."""
    study = optuna.create_study()
    rng = np.random.default_rng(0)
    space = CFG.tune.search
    distributions = {
        "latent_size": CategoricalDistribution(space.latent_size),
        "head": CategoricalDistribution(space.head),
        "learning_rate": FloatDistribution(space.learning_rate.low, space.learning_rate.high, log=True),
    }
    for i, value in enumerate(values):
        state = states[i] if states else TrialState.COMPLETE
        params = {
            "latent_size": space.latent_size[i % len(space.latent_size)],
            "head": space.head[i % 2],
            "learning_rate": float(rng.uniform(space.learning_rate.low, space.learning_rate.high)),
        }
        curve = {1: (value or 0.05) * 1.5, 2: value or 0.05} if state != TrialState.FAIL else {}
        study.add_trial(
            create_trial(
                state=state,
                value=value if state != TrialState.FAIL else None,
                params=params,
                distributions=distributions,
                intermediate_values=curve
                if state == TrialState.COMPLETE
                else {1: curve.get(1, 0.1)}
                if curve
                else {},
            )
        )
    return study


def test_trial_epochs_counts_every_reported_epoch() -> None:
    study = finished_study(
        [0.02, 0.03, 0.04, None],
        [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL],
    )
    assert search.trial_epochs(study) == 2 + 2 + 1 + 0
    assert search.finished_trials(study) == 3


def test_best_trial_becomes_a_dvc_exp_run_line_that_parses_back() -> None:
    trial = create_trial(
        value=0.01, params=PARAMS, distributions={k: CategoricalDistribution([v]) for k, v in PARAMS.items()}
    )
    overrides = search.best_overrides(trial, CFG.train)
    assert overrides == {
        # The line pins the precision the trials computed in (params.yaml's, here float32).
        "model": {
            "family": "autoencoder",
            "encoder_widths": [512, 256],
            "decoder_widths": [128, 128],
            "head": "dense",
            "bidirectional": True,
            "row_index": True,
            "precision": "float32",
        },
        "train": {"learning_rate": 0.001234, "batch_size": 128},
    }
    line = search.exp_run_command(overrides)
    assert "-S model.bidirectional=true" in line and "-S model.row_index=true" in line  # YAML's spelling
    words = shlex.split(line)
    assert words[:3] == ["dvc", "exp", "run"]
    sets = dict(word.split("=", 1) for word in words[3:] if word != "-S")
    # DVC parses each -S value as YAML: the values must round-trip into a valid config.
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for key, text in sets.items():
        section, name = key.split(".")
        raw[section][name] = yaml.safe_load(text)
    cfg = parse_config(raw)
    assert cfg.model.encoder_widths == (512, 256) and cfg.train.learning_rate == 0.001234
    assert cfg.model.bidirectional is True and cfg.model.row_index is True


def test_study_figures_and_importances_of_a_finished_study(tmp_path: Path) -> None:
    study = finished_study([0.02, 0.03, 0.025, 0.04, 0.05, 0.021])
    open_before = pyplot.get_fignums()
    figures = search.study_figures(study, seed=0)
    assert set(figures) == {
        "optimization_history",
        "param_importances",
        "parallel_coordinate",
        "intermediate_values",
    }
    assert pyplot.get_fignums() == open_before  # pyplot keeps none of them (a test run once held dozens)
    for name, figure in figures.items():
        assert figure.axes
        figure.savefig(tmp_path / f"{name}.png", dpi=30)  # closed in pyplot, still saved
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    importances = search.param_importances(study, seed=0)
    assert set(importances) == {"latent_size", "head", "learning_rate"}
    assert sum(importances.values()) == pytest.approx(1.0)


def test_a_study_too_small_for_a_figure_skips_that_figure() -> None:
    figures = search.study_figures(finished_study([0.02]), seed=0)
    assert "param_importances" not in figures
    assert "optimization_history" in figures
    assert search.param_importances(finished_study([0.02]), seed=0) == {}


def test_progress_line_names_trial_state_params_and_best() -> None:
    study = finished_study([0.02, 0.03])
    line = search.describe_trial(study.trials[1], study.best_trial)
    assert line.startswith("trial 1 COMPLETE after 2 epoch(s)")
    assert "val MSE 0.03000" in line and "latent_size=" in line and "best: trial 0, 0.02000" in line


def best_trial_overrides(params: dict, base) -> dict:
    """What search.best_overrides makes of a finished trial with these parameters."""
    trial = create_trial(
        value=0.001, params=params, distributions={k: CategoricalDistribution([v]) for k, v in params.items()}
    )
    return search.best_overrides(trial, CFG.train, base=base)


def composed_by_dvc(line: str, tmp_path: Path):
    """The settings `dvc exp run` composes from a best-trial line's `-S` values (DVC's own Hydra call)."""
    out = tmp_path / "params.yaml"
    words = [w for w in shlex.split(line)[3:] if w != "-S"]
    compose_and_dump(out, str(ROOT / "conf"), None, "config", str(ROOT), words)
    return parse_config(yaml.safe_load(out.read_text(encoding="utf-8")))


RESTORER_PARAMS = {
    "restorer_features": 32,
    "restorer_units": 16,
    "restorer_blocks": 2,
    "learning_rate": 0.002,
    "batch_size": 128,
}


def test_a_restorer_study_searches_widths_depth_and_rate_and_its_best_trial_parses_back(
    tmp_path: Path,
) -> None:
    space = CFG.tune.search
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        params = search.suggest_params(study.ask(), space, "restorer")
        assert set(params) == set(RESTORER_PARAMS)
        assert params["restorer_units"] in space.restorer.units
        assert params["restorer_blocks"] in space.restorer.blocks
        rate = space.restorer.learning_rate
        assert rate.low <= params["learning_rate"] <= rate.high
        assert params["batch_size"] in space.restorer.batch_size  # its own, not the autoencoder's
    base = CFG.model.model_copy(update={"family": "restorer"})
    model, train = search.configs_from_params(RESTORER_PARAMS, CFG.train, max_epochs=2, base=base)
    assert (model.family, model.restorer.units, model.restorer.blocks) == ("restorer", 16, 2)
    assert model.encoder_widths == CFG.model.encoder_widths  # the autoencoder's keys are left alone
    assert (train.learning_rate, train.max_epochs) == (0.002, 2)
    overrides = best_trial_overrides(RESTORER_PARAMS, base)
    assert set(overrides["model"]) == {"family", "restorer", "precision"}
    study_cfg = load_config(ROOT / "params.yaml", preset="denoise")
    line = search.exp_run_command(search.study_recipe(study_cfg) | overrides)
    assert "-S model.restorer.units=16" in line and "-S model.family=restorer" in line
    words = shlex.split(line)
    assert words[3:7] == ["-S", "preset=denoise", "-S", "task=denoise"]
    # The line as `dvc exp run` composes it: the study's preset first, the tuned values winning over it.
    cfg = composed_by_dvc(line, tmp_path)
    assert (cfg.task, cfg.corruption.noise_sigma, cfg.model.restorer.blocks) == ("denoise", 0.1, 2)
    assert (cfg.train.learning_rate, cfg.train.batch_size) == (0.002, RESTORER_PARAMS["batch_size"])


def test_a_restorer_trial_without_the_pipelines_model_section_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the pipeline's model section"):
        search.configs_from_params(RESTORER_PARAMS, CFG.train)


SWEEP_PARAMS = {
    "sweep_features": 64,
    "sweep_units": 32,
    "sweep_patch": 1,
    "sweep_linear_rate": 0.03,
    "learning_rate": 0.004,
    "batch_size": 32,
}


def test_a_sweep_autoencoder_study_searches_its_own_space_at_one_code_size(tmp_path: Path) -> None:
    """Its own keys and rate range, never the code size; the best line trains that model."""
    space = CFG.tune.search
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        params = search.suggest_params(study.ask(), space, "sweep_ae")
        assert set(params) == set(SWEEP_PARAMS)
        assert params["sweep_patch"] in space.sweep.patch and params["sweep_units"] in space.sweep.units
        assert params["sweep_linear_rate"] in space.sweep.linear_rate
        assert space.sweep.learning_rate.low <= params["learning_rate"] <= space.sweep.learning_rate.high
        assert params["batch_size"] in space.sweep.batch_size
    base = CFG.model.model_copy(update={"family": "sweep_ae"})
    model, train = search.configs_from_params(SWEEP_PARAMS, CFG.train, max_epochs=2, base=base)
    assert (model.family, model.sweep.features, model.sweep.patch, model.sweep.linear_rate) == (
        "sweep_ae",
        64,
        1,
        0.03,
    )
    assert model.sweep.code_size == CFG.model.sweep.code_size == model.latent_size == 256
    assert (train.learning_rate, train.batch_size, train.max_epochs) == (0.004, 32, 2)
    overrides = best_trial_overrides(SWEEP_PARAMS, base)
    assert set(overrides["model"]) == {"family", "sweep", "precision"}
    line = search.exp_run_command(search.study_recipe(CFG) | overrides)
    assert "-S model.family=sweep_ae" in line and "-S model.sweep.patch=1" in line
    cfg = composed_by_dvc(line, tmp_path)
    assert (cfg.model.family, cfg.model.sweep.features, cfg.train.learning_rate) == ("sweep_ae", 64, 0.004)


def test_a_sweep_autoencoder_trial_builds_a_model_started_at_pca() -> None:
    base = CFG.model.model_copy(update={"family": "sweep_ae"})
    model_cfg, _ = search.configs_from_params(SWEEP_PARAMS, CFG.train, base=base)
    x = np.random.default_rng(0).random((300, 32, 96), dtype=np.float32)
    model = build_model(model_cfg, x, seed=0)
    assert model.name == "sweep_autoencoder" and model.get_layer("code").units == 256
    with pytest.raises(ValueError, match="needs the pipeline's model section"):
        search.configs_from_params(SWEEP_PARAMS, CFG.train)
