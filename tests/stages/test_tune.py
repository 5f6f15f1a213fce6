"""The tune stage end to end on tiny data: studies, resumption, reports, pruning, failing
trials, the MLflow runs and optuna-dashboard. How trials run in worker processes (signals,
killed workers, PostgreSQL) is tested in tests/tuning/test_workers.py.

Studies run through the real command line (each trial in its own spawned process), except
where a test patches the objective and runs the trials in this process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import keras
import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from lstm_ae.config import load_config, parse_config, set_values
from lstm_ae.paths import TUNE_BEST, TUNE_FIGURES, TUNE_SUMMARY, TUNE_TRIALS
from lstm_ae.stages import tune as tune_stage
from lstm_ae.tracking.runs import flatten_params
from lstm_ae.tuning import objective, search
from tests.helpers.projects import make_tiny_project
from tests.helpers.servers import free_port
from tests.helpers.studies import (
    TINY_SEARCH,
    assert_one_child_run_per_trial,
    load_study,
    make_project,
    mlflow_runs,
    split_runs,
    tune_cli,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-trial study run by the command line with four worker processes at once, a fresh
    process per trial (the default), on the default journal storage and the project's SQLite
    MLflow store."""
    project = make_project(tmp_path_factory.mktemp("tune"), n_trials=8, workers=4, trials_per_process=1)
    result = tune_cli(project)
    (project / "first_run.log").write_text(result.stderr, encoding="utf-8")
    return project


RUNNER_IMPORTS = "import sys, lstm_ae.stages.tune; print(sorted({'keras', 'tensorflow'} & set(sys.modules)))"


def test_the_command_that_runs_a_study_starts_without_tensorflow() -> None:
    """The runner only spawns, counts and reports; Keras is imported by the processes that train.
    With it, the runner took ~6 s of CPU and ~720 MiB more to start."""
    result = subprocess.run(
        [sys.executable, "-c", RUNNER_IMPORTS], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_study_runs_the_requested_trials_as_child_runs_of_one_parent(studied: Path) -> None:
    study = load_study(studied)
    assert len(study.trials) == 8
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    log = (studied / "first_run.log").read_text(encoding="utf-8")
    assert "database is locked" not in log and "Traceback" not in log
    parents, children = split_runs(mlflow_runs(studied))
    assert [p.info.run_name for p in parents] == ["study-tiny"]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    assert_one_child_run_per_trial(study, children, parent.info.run_id)

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{studied / 'mlflow.db'}")
    for run in children:
        trial = study.trials[int(run.data.tags["optuna.trial_number"])]
        assert run.info.status == "FINISHED"
        assert run.data.params["latent_size"] == str(trial.params["latent_size"])
        assert "model.encoder_widths" in run.data.params and "trial_seconds" in run.data.metrics
        val_losses = [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert len(val_losses) == len(trial.intermediate_values)
        assert val_losses == pytest.approx(
            [trial.intermediate_values[s] for s in sorted(trial.intermediate_values)]
        )
    assert parent.data.metrics["best_val_mse"] == pytest.approx(study.best_value)
    assert parent.data.metrics["n_complete"] + parent.data.metrics["n_pruned"] == 8
    assert parent.data.tags["best.latent_size"] == str(study.best_params["latent_size"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {
        "study/optimization_history.png",
        "study/intermediate_values.png",
        "study/param_importances.png",
        "study/parallel_coordinate.png",
        "study/best_params.yaml",
    } <= artifacts


@pytest.mark.slow
def test_memory_stays_flat_over_trials(studied: Path) -> None:
    """Each trial runs in a fresh process; in one process TensorFlow grows ~17 MiB per model."""
    study = load_study(studied)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 8
    _, children = split_runs(mlflow_runs(studied))
    rss = [run.data.metrics["rss_mib"] for run in children]
    assert max(rss) - min(rss) < 80, rss


@pytest.mark.slow
def test_reports_hold_the_best_trial_and_a_command_that_applies_it(studied: Path) -> None:
    study = load_study(studied)
    best_text = (studied / TUNE_BEST).read_text(encoding="utf-8")
    best = yaml.safe_load(best_text)
    assert best["train"]["learning_rate"] == pytest.approx(study.best_params["learning_rate"], rel=1e-3)
    assert best["model"]["encoder_widths"][-1] == study.best_params["latent_size"]
    assert "dvc exp run -S" in best_text
    assert (best["preset"], best["task"]) == ("default", "reconstruct")  # the line trains the study's task
    raw = yaml.safe_load((studied / "params.yaml").read_text(encoding="utf-8"))
    parse_config(set_values(raw, flatten_params(best)))  # the best values make a valid params.yaml
    summary = json.loads((studied / TUNE_SUMMARY).read_text(encoding="utf-8"))
    assert summary["best_trial"] == study.best_trial.number
    assert summary["n_complete"] + summary["n_pruned"] + summary["n_failed"] == 8
    assert summary["trial_epochs"] == sum(len(t.intermediate_values) for t in study.trials)
    assert set(summary["importance"]) <= set(TINY_SEARCH)
    assert len((studied / TUNE_TRIALS).read_text(encoding="utf-8").splitlines()) == 9
    assert {p.name for p in (studied / TUNE_FIGURES).iterdir()} >= {
        "optimization_history.png",
        "intermediate_values.png",
    }
    log = (studied / "first_run.log").read_text(encoding="utf-8")
    assert all(f"tune-worker-{slot}:" in log for slot in range(4)) and "best trial" in log
    assert "oneDNN" not in log  # TensorFlow's import banner is muted in every trial process


@pytest.mark.slow
def test_running_again_tops_the_study_up_and_reuses_its_parent_run(studied: Path) -> None:
    parent_before = load_study(studied).user_attrs["mlflow_parent_run_id"]
    result = tune_cli(studied)  # n_trials 8 reached: nothing to run
    assert "running up to 0 more" in result.stderr
    assert len(load_study(studied).trials) == 8
    tune_cli(studied, "--n-trials", "9", "--workers", "1")
    study = load_study(studied)
    assert len(study.trials) == 9
    parents, children = split_runs(mlflow_runs(studied))
    assert [p.info.run_id for p in parents] == [parent_before]
    assert parents[0].info.status == "FINISHED"
    assert_one_child_run_per_trial(study, children, parent_before)


@pytest.mark.slow
def test_a_changed_search_space_needs_a_new_study_name(studied: Path) -> None:
    params = studied / "params.yaml"
    original = params.read_text(encoding="utf-8")
    raw = yaml.safe_load(original)
    raw["tune"]["search"]["latent_size"] = [4, 8, 12]
    params.write_text(yaml.safe_dump(raw), encoding="utf-8")
    summary_before = (studied / TUNE_SUMMARY).read_bytes()
    try:
        result = tune_cli(studied, check=False)
    finally:
        params.write_text(original, encoding="utf-8")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tune.search" in errors[0] and "--study-name" in errors[0]
    assert (studied / TUNE_SUMMARY).read_bytes() == summary_before


@pytest.mark.slow
def test_bad_option_fails_before_any_work(studied: Path) -> None:
    result = tune_cli(studied, "--workers", "0", check=False)
    assert result.returncode == 2
    assert "tune.workers: Input should be greater than or equal to 1" in result.stderr


@pytest.mark.slow
def test_optuna_dashboard_serves_the_study(studied: Path) -> None:
    port = free_port()
    dashboard = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    server = subprocess.Popen(
        [dashboard, "optuna-journal.log", "--host", "127.0.0.1", "--port", str(port)],
        cwd=studied,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.load(response)["study_summaries"]
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError(f"optuna-dashboard did not answer: {server.stderr.read1().decode()}")  # type: ignore[union-attr]
                time.sleep(0.5)
        assert [s["study_name"] for s in studies] == ["tiny"]
        study_id = studies[0]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study_id}", timeout=5) as response:
            detail = json.load(response)
        assert len(detail["trials"]) == len(load_study(studied).trials)
        assert detail["objective_names"] == ["val_mse"]  # not a bare "Objective 0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_study_names_its_objective_val_mse_also_one_made_before_it_did() -> None:
    storage = optuna.storages.InMemoryStorage()
    older = optuna.create_study(study_name="s", storage=storage)  # a study from before the name
    assert older.metric_names is None
    study, created = tune_stage.open_study("s", storage)
    assert study.metric_names == ["val_mse"] and study._study_id == older._study_id and not created
    study.add_trial(optuna.trial.create_trial(value=0.25))
    assert study.trials_dataframe()["value_val_mse"].tolist() == [0.25]
    assert tune_stage.open_study("s", storage)[0].metric_names == ["val_mse"]  # opened again: unchanged
    assert tune_stage.open_study("new", storage)[1]  # this call created it


def test_a_command_that_did_not_create_the_study_waits_for_the_creators_mlflow_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two machines starting one study: the one that created it opens its MLflow run; the other
    takes that run rather than opening a second parent for the same trials."""
    storage = optuna.storages.InMemoryStorage()
    creator, created = tune_stage.open_study("s", storage)
    follower, follower_created = tune_stage.open_study("s", storage)
    assert created and not follower_created
    threading.Timer(0.5, lambda: creator.set_user_attr(tune_stage.PARENT_ATTR, "creators-run")).start()
    assert tune_stage.wait_for_parent_run(follower) == "creators-run"
    monkeypatch.setattr(tune_stage, "PARENT_WAIT_S", 0.2)
    assert tune_stage.wait_for_parent_run(tune_stage.open_study("t", storage)[0]) is None  # its creator died


def test_a_study_keeps_its_settings_and_names_what_changed() -> None:
    cfg = load_config(REPO / "params.yaml")
    study = optuna.create_study()
    settings = tune_stage.study_settings(cfg, "a" * 32)
    tune_stage.check_settings(study, settings)  # new study: recorded
    tune_stage.check_settings(study, settings)  # same settings: fine
    changed = {**settings, "tune.max_epochs": 9, "data_md5": "b" * 32}
    with pytest.raises(
        tune_stage.TuneError, match=r"other data_md5, tune.max_epochs; .* new tune.study_name"
    ):
        tune_stage.check_settings(study, changed)


def test_a_study_from_before_clipping_and_precision_continues_as_it_ran_and_refuses_other_values() -> None:
    # Studies from then searched the LSTM autoencoder, the family they record when they recorded none.
    cfg = load_config(REPO / "params.yaml", preset="autoencoder")
    settings = tune_stage.study_settings(cfg, "a" * 32)
    study = optuna.create_study()
    study.set_user_attr(
        tune_stage.SETTINGS_ATTR, {k: v for k, v in settings.items() if k not in tune_stage.ADDED_SETTINGS}
    )
    tune_stage.check_settings(study, settings)  # params.yaml's null and float32: the same trials as before
    clipped = cfg.model_copy(update={"train": cfg.train.model_copy(update={"global_clipnorm": 0.05})})
    with pytest.raises(tune_stage.TuneError, match=r"other train.global_clipnorm;"):
        tune_stage.check_settings(study, tune_stage.study_settings(clipped, "a" * 32))
    bf16 = cfg.model_copy(update={"model": cfg.model.model_copy(update={"precision": "mixed_bfloat16"})})
    with pytest.raises(tune_stage.TuneError, match=r"other model.precision;"):
        tune_stage.check_settings(study, tune_stage.study_settings(bf16, "a" * 32))


def test_a_restorer_study_from_before_undrawn_keys_were_recorded_continues_only_with_their_defaults() -> None:
    """Its trials took model.restorer.sweeps from the pipeline (true, the only value then); the
    study now records it, and a study without the record is taken to have run with the default."""
    cfg = load_config(REPO / "params.yaml", preset="denoise")
    settings = tune_stage.study_settings(cfg, "a" * 32)
    assert cfg.model.family == "restorer" and settings["model.undrawn"] == {"sweeps": True}
    study = optuna.create_study()
    study.set_user_attr(tune_stage.SETTINGS_ATTR, {k: v for k, v in settings.items() if k != "model.undrawn"})
    tune_stage.check_settings(study, settings)
    ablation = cfg.model.model_copy(
        update={"restorer": cfg.model.restorer.model_copy(update={"sweeps": False})}
    )
    with pytest.raises(tune_stage.TuneError, match=r"other model.undrawn;"):
        tune_stage.check_settings(
            study, tune_stage.study_settings(cfg.model_copy(update={"model": ablation}), "a" * 32)
        )


# --- trials run in this process, with the objective patched -------------------------------


class PruneOddTrials(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number % 2 == 1


@pytest.mark.slow
def test_a_pruned_trial_stops_after_the_epoch_and_is_recorded_as_pruned(
    in_project: Path, monkeypatch
) -> None:
    make_project(in_project, n_trials=4, max_epochs=3)
    monkeypatch.setattr(search, "make_pruner", lambda name, max_epochs: PruneOddTrials())
    summary = tune_stage.run(load_config(in_project / "params.yaml"), isolate=False)
    study = load_study(in_project)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED] * 2
    assert [len(t.intermediate_values) for t in study.trials] == [3, 1, 3, 1]
    assert summary["n_pruned"] == 2 and summary["trial_epochs"] == 8
    _, children = split_runs(mlflow_runs(in_project))
    pruned = [r for r in children if r.data.tags["trial_state"] == "PRUNED"]
    assert len(pruned) == 2 and all(r.info.status == "FINISHED" for r in pruned)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{in_project / 'mlflow.db'}")
    assert all(len(client.get_metric_history(r.info.run_id, "val_loss")) == 1 for r in pruned)


def nan_on_second_build(real_build):
    """build_autoencoder whose second model outputs NaN: that trial's loss is NaN."""
    calls = []

    def build(cfg, *args):
        model = real_build(cfg, *args)
        calls.append(cfg)
        if len(calls) != 2:
            return model
        poisoned = keras.layers.Lambda(lambda x: x * float("nan"), name="poison")(model.output)
        return keras.Model(model.input, poisoned)

    return build


@pytest.mark.slow
def test_a_nan_trial_is_recorded_as_failed_and_the_study_goes_on(in_project: Path, monkeypatch) -> None:
    make_project(in_project, n_trials=3, pruner="none")
    monkeypatch.setattr(objective, "build_model", nan_on_second_build(objective.build_model))
    summary = tune_stage.run(load_config(in_project / "params.yaml"), isolate=False)
    study = load_study(in_project)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert summary["n_failed"] == 1 and summary["n_complete"] == 2
    _, children = split_runs(mlflow_runs(in_project))
    failed = [r for r in children if r.data.tags["trial_state"] == "FAIL"]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    assert "TrainingDiverged" in failed[0].data.tags["error"] and "nan" in failed[0].data.tags["error"]
    # The failed trial does not count: running again adds the one still missing.
    tune_stage.run(load_config(in_project / "params.yaml"), isolate=False)
    assert search.finished_trials(load_study(in_project)) == 3


@pytest.mark.slow
def test_a_study_without_a_complete_trial_keeps_the_previous_reports(in_project: Path, monkeypatch) -> None:
    make_project(in_project, n_trials=2, pruner="none")
    (in_project / TUNE_SUMMARY).parent.mkdir(parents=True)
    (in_project / TUNE_SUMMARY).write_text("previous\n", encoding="utf-8")

    def always_nan(cfg):
        model = keras.Sequential([keras.Input((32, 96)), keras.layers.Lambda(lambda x: x * float("nan"))])
        return model

    monkeypatch.setattr(objective, "build_model", always_nan)
    with pytest.raises(tune_stage.TuneError, match="no complete trial"):
        tune_stage.run(load_config(in_project / "params.yaml"), isolate=False)
    assert (in_project / TUNE_SUMMARY).read_text(encoding="utf-8") == "previous\n"
    parents, _ = split_runs(mlflow_runs(in_project))
    assert parents[0].info.status == "FAILED"


@pytest.mark.slow
def test_a_restoration_study_trains_every_trial_on_the_task_and_keeps_to_it(in_project: Path) -> None:
    settings = {"study_name": "tiny", "n_trials": 2, "max_epochs": 1, "train_images": 96, "val_images": 48}
    make_tiny_project(in_project, task="denoise", tune={**settings, "search": TINY_SEARCH, "pruner": "none"})
    cfg = load_config(in_project / "params.yaml")
    tune_stage.run(cfg, isolate=False)
    study = load_study(in_project)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    parents, children = split_runs(mlflow_runs(in_project))
    assert (
        parents[0].data.params["task"] == "denoise"
        and parents[0].data.params["corruption.noise_sigma"] == "0.1"
    )
    assert all(
        r.data.tags["task"] == "denoise" and r.data.tags["corruption"] == "Gaussian noise, sigma 0.1"
        for r in children
    )
    # A denoising trial's validation loss is not comparable with a deblurring one's.
    with pytest.raises(tune_stage.TuneError, match="other corruption, task"):
        tune_stage.run(parse_config({**cfg.model_dump(mode="json"), "task": "deblur"}), isolate=False)
