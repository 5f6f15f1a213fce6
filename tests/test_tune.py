"""The tune stage end to end on tiny data: studies, resumption, pruning, failures, MLflow runs,
optuna-dashboard and several workers on a real PostgreSQL server.

Studies run through the real command line (each trial in its own spawned process), except
where a test patches the objective and runs the trials in this process.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from lstm_ae import trials, tuning
from lstm_ae.config import load_config, parse_config
from lstm_ae.paths import TUNE_BEST, TUNE_FIGURES, TUNE_SUMMARY, TUNE_TRIALS
from lstm_ae.stages import tune as tune_stage
from projects import cli_env, make_tiny_project

slow = pytest.mark.slow  # every test that trains, except the settings checks below
# `make test` runs tests on two pytest-xdist workers; tests that share a module fixture run on
# one, in file order, so the fixture is built once (several of them change the study in turn).
on_studied = pytest.mark.xdist_group("tune-studied")
on_postgres = pytest.mark.xdist_group("tune-postgres")

REPO = Path(__file__).resolve().parents[1]
TINY_SEARCH = {
    "latent_size": [4, 8],
    "encoder_layers": [0, 1],
    "encoder_width": [8],
    "decoder_layers": [1],
    "decoder_width": [8, 16],
    "learning_rate": {"low": 0.001, "high": 0.01},
    "batch_size": [32],
    "head": ["lstm", "dense"],
    "bidirectional": [False, True],
    "row_index": [False, True],
}


def make_project(root: Path, **tune: object) -> Path:
    """A project folder with a tiny processed data set and params.yaml set for fast trials.

    A worker process runs up to 3 trials (a fresh process costs ~10 s of CPU, mostly
    TensorFlow's import); the `studied` fixture keeps the default of one."""
    settings = {
        "study_name": "tiny", "n_trials": 4, "max_epochs": 2, "train_images": 96, "val_images": 48, "trials_per_process": 3,
    }
    return make_tiny_project(root, tune={**settings, "search": TINY_SEARCH, **tune})


def tune_cli(project: Path, *options: str, check: bool = True) -> subprocess.CompletedProcess:
    env = cli_env()
    result = subprocess.run(
        [sys.executable, "-m", "lstm_ae", "tune", *options], cwd=project, env=env, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(f"tune {' '.join(options)} failed ({result.returncode}):\n{result.stderr}")
    return result


def load_study(project: Path, name: str = "tiny", storage: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage or tuning.open_storage("optuna-journal.log", project))


def mlflow_runs(project: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10-lstm-autoencoder")
    return client.search_runs([experiment.experiment_id], max_results=1000)


def split_runs(runs: list[mlflow.entities.Run]) -> tuple[list, list]:
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def assert_one_child_run_per_trial(study: optuna.Study, children: list, parent_id: str) -> None:
    """Every trial recorded once in each store: unique numbers, one nested run each, same state."""
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(len(numbers)))
    by_number = {}
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        number = int(run.data.tags["optuna.trial_number"])
        assert number not in by_number, f"trial {number} has two MLflow runs"
        by_number[number] = run
    assert sorted(by_number) == numbers
    for trial in study.trials:
        run = by_number[trial.number]
        assert run.data.tags["trial_state"] == trial.state.name
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id


@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-trial study run by the command line with four worker processes at once, a fresh
    process per trial (the default), on the default journal storage and the project's SQLite
    MLflow store."""
    project = make_project(tmp_path_factory.mktemp("tune"), n_trials=8, workers=4, trials_per_process=1)
    result = tune_cli(project)
    (project / "first_run.log").write_text(result.stderr, encoding="utf-8")
    return project


@slow
@on_studied
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
        assert val_losses == pytest.approx([trial.intermediate_values[s] for s in sorted(trial.intermediate_values)])
    assert parent.data.metrics["best_val_mse"] == pytest.approx(study.best_value)
    assert parent.data.metrics["n_complete"] + parent.data.metrics["n_pruned"] == 8
    assert parent.data.tags["best.latent_size"] == str(study.best_params["latent_size"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/optimization_history.png", "study/intermediate_values.png", "study/param_importances.png",
            "study/parallel_coordinate.png", "study/best_params.yaml"} <= artifacts


@slow
@on_studied
def test_memory_stays_flat_over_trials(studied: Path) -> None:
    """Each trial runs in a fresh process; in one process TensorFlow grows ~17 MiB per model."""
    study = load_study(studied)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 8
    _, children = split_runs(mlflow_runs(studied))
    rss = [run.data.metrics["rss_mib"] for run in children]
    assert max(rss) - min(rss) < 80, rss


@slow
@on_studied
def test_reports_hold_the_best_trial_and_a_command_that_applies_it(studied: Path) -> None:
    study = load_study(studied)
    best_text = (studied / TUNE_BEST).read_text(encoding="utf-8")
    best = yaml.safe_load(best_text)
    assert best["train"]["learning_rate"] == pytest.approx(study.best_params["learning_rate"], rel=1e-3)
    assert best["model"]["encoder_widths"][-1] == study.best_params["latent_size"]
    assert "dvc exp run -S" in best_text
    raw = yaml.safe_load((studied / "params.yaml").read_text(encoding="utf-8"))
    for section, values in best.items():
        raw[section].update(values)
    parse_config(raw)  # the best values make a valid params.yaml
    summary = json.loads((studied / TUNE_SUMMARY).read_text(encoding="utf-8"))
    assert summary["best_trial"] == study.best_trial.number
    assert summary["n_complete"] + summary["n_pruned"] + summary["n_failed"] == 8
    assert summary["trial_epochs"] == sum(len(t.intermediate_values) for t in study.trials)
    assert set(summary["importance"]) <= set(TINY_SEARCH)
    assert len((studied / TUNE_TRIALS).read_text(encoding="utf-8").splitlines()) == 9
    assert {p.name for p in (studied / TUNE_FIGURES).iterdir()} >= {"optimization_history.png", "intermediate_values.png"}
    log = (studied / "first_run.log").read_text(encoding="utf-8")
    assert all(f"tune-worker-{slot}:" in log for slot in range(4)) and "best trial" in log
    assert "oneDNN" not in log  # TensorFlow's import banner is muted in every trial process


@slow
@on_studied
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


@slow
@on_studied
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


def start_tune(project: Path, *options: str) -> subprocess.Popen:
    """`lstm-ae tune` in its own process group (signals sent to the group reach its workers, as
    Ctrl-C does), with SIGINT's default restored: a runner started in the background ignores it."""
    return subprocess.Popen(
        [sys.executable, "-m", "lstm_ae", "tune", *options], cwd=project, env=cli_env(), stderr=subprocess.PIPE,
        text=True, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_trials(process: subprocess.Popen, study: Callable[[], optuna.Study], *states: TrialState) -> list:
    """Poll the study until it holds a trial in each of ``states``; the trials then RUNNING."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(KeyError):  # the study is not created yet
            trials = study().trials
            running = [t for t in trials if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
            if running and set(states) <= {t.state for t in trials}:
                return running
        time.sleep(0.3)
    raise AssertionError(f"no trial in {states} within 300 s; the command exited with {process.poll()}")


@slow
@pytest.mark.parametrize(
    ("signum", "to_group"), [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl-c", "sigterm-to-runner"]
)
def test_an_interrupt_keeps_finished_trials_and_the_same_command_continues(
    signum: int, to_group: bool, tmp_path: Path
) -> None:
    """Ctrl-C reaches the whole process group; `kill` (SIGTERM) reaches the runner only, which
    passes it on to its workers."""
    project = make_project(tmp_path, n_trials=4, max_epochs=30, pruner="none")
    process = start_tune(project, "--workers", "2")
    try:
        wait_for_trials(process, lambda: load_study(project), TrialState.COMPLETE)
        os.killpg(process.pid, signum) if to_group else process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signum, stderr
    assert f"interrupted ({signal.Signals(signum).name})" in stderr
    assert "run the same command to continue" in stderr and "Traceback" not in stderr
    study = load_study(project)
    kept = tuning.finished_trials(study)
    assert 1 <= kept < 4
    assert TrialState.RUNNING not in [t.state for t in study.trials]
    parents, children = split_runs(mlflow_runs(project))
    assert parents[0].info.status == "KILLED"
    assert "KILLED" in {r.info.status for r in children}
    assert "RUNNING" not in {r.info.status for r in children}

    tune_cli(project, "--workers", "2")  # the same command as before the interrupt
    assert tuning.finished_trials(load_study(project)) == 4


@slow
def test_a_killed_trial_process_is_marked_failed_and_the_study_goes_on(tmp_path: Path) -> None:
    """kill -9 (or the OOM killer) on a trial's process: the trial fails, and the trials that
    process had yet to run go to the next one."""
    project = make_project(tmp_path, n_trials=3, max_epochs=40, pruner="none")
    process = start_tune(project)
    try:
        victim = wait_for_trials(process, lambda: load_study(project))[0]
        os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        _, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr
    assert f"trial {victim.number} FAIL: its worker" in stderr and "killed by signal 9" in stderr
    study = load_study(project)
    assert study.trials[victim.number].state == TrialState.FAIL
    assert len(study.trials) == 3 and tuning.finished_trials(study) == 2
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # one process ran both of the others
    _, children = split_runs(mlflow_runs(project))
    killed = [r for r in children if r.info.run_id == victim.user_attrs["mlflow_run_id"]]
    assert killed[0].info.status == "FAILED" and "killed by signal 9" in killed[0].data.tags["error"]


@slow
def test_a_worker_lost_on_another_machine_is_failed_by_optunas_heartbeat(tmp_path: Path) -> None:
    """SIGKILL to the whole command (runner and trial process): nothing records the end. The
    trial is then made to look as if it ran on another machine, where this machine cannot see
    its process; only the heartbeat tells that it stopped."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    project = make_project(tmp_path, n_trials=3, max_epochs=40, pruner="none", storage=url, heartbeat_s=1)
    optuna.storages.RDBStorage(url)  # its tables, made before the command and this test both poll
    process = start_tune(project)
    try:
        victim = wait_for_trials(process, lambda: load_study(project, storage=url))[0]
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    storage = optuna.storages.RDBStorage(url)
    storage.set_trial_user_attr(victim._trial_id, "worker", "elsewhere:1")
    assert storage.get_trial(victim._trial_id).state == TrialState.RUNNING

    result = tune_cli(project)  # starts after the 2 s grace period: TensorFlow's import alone takes longer
    assert f"trial {victim.number} FAIL: its worker elsewhere:1 stopped sending heartbeats" in result.stderr
    study = load_study(project, storage=url)
    assert study.trials[victim.number].state == TrialState.FAIL
    assert tuning.finished_trials(study) == 3 and TrialState.RUNNING not in {t.state for t in study.trials}
    _, children = split_runs(mlflow_runs(project))
    lost = [r for r in children if r.info.run_id == victim.user_attrs["mlflow_run_id"]]
    assert lost[0].info.status == "FAILED" and "stopped sending heartbeats" in lost[0].data.tags["error"]


@slow
def test_the_time_budget_stops_starting_trials(tmp_path: Path) -> None:
    project = make_project(tmp_path, n_trials=10)
    # The first trial starts at once and outlasts the budget; its process (given up to 3
    # trials) then starts no other.
    tune_cli(project, "--timeout", "1")
    assert len(load_study(project).trials) == 1
    assert json.loads((project / TUNE_SUMMARY).read_text(encoding="utf-8"))["n_complete"] == 1


@slow
@on_studied
def test_bad_option_fails_before_any_work(studied: Path) -> None:
    result = tune_cli(studied, "--workers", "0", check=False)
    assert result.returncode == 2
    assert "tune.workers: Input should be greater than or equal to 1" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@slow
@on_studied
def test_optuna_dashboard_serves_the_study(studied: Path) -> None:
    port = free_port()
    dashboard = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    server = subprocess.Popen(
        [dashboard, "optuna-journal.log", "--host", "127.0.0.1", "--port", str(port)],
        cwd=studied, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
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
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_study_keeps_its_settings_and_names_what_changed() -> None:
    cfg = load_config(REPO / "params.yaml")
    study = optuna.create_study()
    settings = tune_stage.study_settings(cfg, "a" * 32)
    tune_stage.check_settings(study, settings)  # new study: recorded
    tune_stage.check_settings(study, settings)  # same settings: fine
    changed = {**settings, "tune.max_epochs": 9, "data_md5": "b" * 32}
    with pytest.raises(tune_stage.TuneError, match=r"other data_md5, tune.max_epochs; .* new tune.study_name"):
        tune_stage.check_settings(study, changed)


def test_trials_left_running_by_a_dead_process_on_this_host_are_failed_on_resume() -> None:
    study = optuna.create_study()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owners = {
        "dead": trials.worker_id(int(dead.stdout)),
        "alive": trials.worker_id(),
        "elsewhere": "another-host:1",
    }
    for owner in owners.values():
        study.ask().set_user_attr("worker", owner)
    assert trials.fail_orphans(study, "no longer exists") == [0]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]


# --- trials run in this process, with the objective patched -------------------------------


@pytest.fixture
def in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


class PruneOddTrials(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number % 2 == 1


@slow
def test_a_pruned_trial_stops_after_the_epoch_and_is_recorded_as_pruned(in_project: Path, monkeypatch) -> None:
    make_project(in_project, n_trials=4, max_epochs=3)
    monkeypatch.setattr(tuning, "make_pruner", lambda name, max_epochs: PruneOddTrials())
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

    def build(cfg):
        model = real_build(cfg)
        calls.append(cfg)
        if len(calls) != 2:
            return model
        poisoned = keras.layers.Lambda(lambda x: x * float("nan"), name="poison")(model.output)
        return keras.Model(model.input, poisoned)

    return build


@slow
def test_a_nan_trial_is_recorded_as_failed_and_the_study_goes_on(in_project: Path, monkeypatch) -> None:
    make_project(in_project, n_trials=3, pruner="none")
    monkeypatch.setattr(tuning, "build_autoencoder", nan_on_second_build(tuning.build_autoencoder))
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
    assert tuning.finished_trials(load_study(in_project)) == 3


@slow
def test_a_study_without_a_complete_trial_keeps_the_previous_reports(in_project: Path, monkeypatch) -> None:
    make_project(in_project, n_trials=2, pruner="none")
    (in_project / TUNE_SUMMARY).parent.mkdir(parents=True)
    (in_project / TUNE_SUMMARY).write_text("previous\n", encoding="utf-8")

    def always_nan(cfg):
        model = keras.Sequential([keras.Input((32, 96)), keras.layers.Lambda(lambda x: x * float("nan"))])
        return model

    monkeypatch.setattr(tuning, "build_autoencoder", always_nan)
    with pytest.raises(tune_stage.TuneError, match="no complete trial"):
        tune_stage.run(load_config(in_project / "params.yaml"), isolate=False)
    assert (in_project / TUNE_SUMMARY).read_text(encoding="utf-8") == "previous\n"
    parents, _ = split_runs(mlflow_runs(in_project))
    assert parents[0].info.status == "FAILED"


# --- a real PostgreSQL server, several workers at once ------------------------------------


def postgres_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    return Path(found).resolve().parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a Unix socket (no TCP), as Debian's postgresql installs it."""
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs Debian's `postgresql` package")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="lstm-ae-pg-"))
    # initdb refuses to run as root: run the server as the postgres user that the package creates.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(base, "postgres")
    data, port = base / "data", free_port()
    run = lambda *args: subprocess.run([*as_user, *map(str, args)], check=True, capture_output=True)  # noqa: E731
    try:
        run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        run(bindir / "pg_ctl", "-D", data, "-l", base / "server.log", "-w", "-o",
            f"-p {port} -k {base} -c listen_addresses='' -c fsync=off", "start")
        run(bindir / "createdb", "-h", base, "-p", port, "-U", "postgres", "optuna")
        yield f"postgresql+psycopg2://postgres@/optuna?host={base}&port={port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@slow
@on_postgres
def test_four_workers_on_postgresql_record_every_trial_once(tmp_path: Path, postgres_url: str) -> None:
    """Four trial processes writing to one PostgreSQL study at once (the journal-storage study
    above covers a slot taking a second trial)."""
    project = make_project(tmp_path, n_trials=4, workers=4, storage=postgres_url, study_name="pg")
    result = tune_cli(project)
    assert "database is locked" not in result.stderr and "Traceback" not in result.stderr
    study = load_study(project, "pg", postgres_url)
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    parents, children = split_runs(mlflow_runs(project))
    assert len(parents) == 1
    assert_one_child_run_per_trial(study, children, parents[0].info.run_id)


@slow
@on_postgres
def test_two_commands_at_once_share_one_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    """As on two machines: both fill one study; neither loses nor repeats a trial."""
    project = make_project(tmp_path, n_trials=6, workers=2, storage=postgres_url, study_name="pg-shared")
    tune_cli(project, "--n-trials", "1", "--workers", "1")  # creates the study and its parent run
    env = cli_env()
    command = [sys.executable, "-m", "lstm_ae", "tune"]
    both = [subprocess.Popen(command, cwd=project, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in both:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    study = load_study(project, "pg-shared", postgres_url)
    # Each command re-reads the study before every trial, so it stops at 6 finished trials,
    # give or take the trials the other command had running at that moment (at most 2).
    assert 6 <= len(study.trials) <= 8
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    parents, children = split_runs(mlflow_runs(project))
    assert len(parents) == 1
    assert_one_child_run_per_trial(study, children, parents[0].info.run_id)


@slow
def test_a_restoration_study_trains_every_trial_on_the_task_and_keeps_to_it(in_project: Path) -> None:
    settings = {"study_name": "tiny", "n_trials": 2, "max_epochs": 1, "train_images": 96, "val_images": 48}
    make_tiny_project(in_project, task="denoise", tune={**settings, "search": TINY_SEARCH, "pruner": "none"})
    cfg = load_config(in_project / "params.yaml")
    tune_stage.run(cfg, isolate=False)
    study = load_study(in_project)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    parents, children = split_runs(mlflow_runs(in_project))
    assert parents[0].data.params["task"] == "denoise" and parents[0].data.params["corruption.noise_sigma"] == "0.1"
    assert all(r.data.tags["task"] == "denoise" and r.data.tags["corruption"] == "Gaussian noise, sigma 0.1" for r in children)
    # A denoising trial's validation loss is not comparable with a deblurring one's.
    with pytest.raises(tune_stage.TuneError, match="other corruption, task"):
        tune_stage.run(parse_config({**cfg.model_dump(mode="json"), "task": "deblur"}), isolate=False)


@slow
def test_in_a_terminal_a_bar_counts_trials_and_each_trial_line_is_printed_once(in_project: Path, capfd) -> None:
    make_project(in_project, n_trials=2, max_epochs=1, pruner="none")
    logging.getLogger().setLevel(logging.INFO)  # what the CLI sets without --quiet
    tune_stage.run(load_config(in_project / "params.yaml"), isolate=True, progress=True)
    err = capfd.readouterr().err
    assert "trials: 100%" in err and "2/2" in err and "best val MSE" in err
    for number in (0, 1):  # printed by the runner above the bar; the quiet workers do not repeat it
        assert err.count(f"trial {number} COMPLETE after 1 epoch(s)") == 1, err
    assert len({t.user_attrs["worker"] for t in load_study(in_project).trials}) == 1  # one process ran both
