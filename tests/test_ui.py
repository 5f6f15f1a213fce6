"""The MLflow UI in a real browser: `mlflow ui` on loopback over a store filled by the real
commands on tiny data, pages rendered by headless Chromium (Debian's `chromium`).

The UI is a JavaScript app, so the checks read the DOM after Chromium has run it
(--dump-dom with a virtual time budget); screenshots go to the test's tmp folder.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from tests.helpers.projects import cli_env, make_tiny_project
from tests.helpers.servers import free_port

pytestmark = pytest.mark.slow

TINY_MODEL = {"encoder_widths": [8], "decoder_widths": [8], "head": "dense"}
TINY_TUNE = {
    "study_name": "ui",
    "n_trials": 2,
    "trials_per_process": 2,
    "max_epochs": 2,
    "train_images": 96,
    "val_images": 48,
    "search": {
        "latent_size": [4, 8],
        "encoder_layers": [0],
        "encoder_width": [8],
        "decoder_layers": [1],
        "decoder_width": [8],
        "learning_rate": {"low": 0.001, "high": 0.01},
        "batch_size": [32],
        "head": ["dense"],
    },
}
# Headless on a machine without network: the background services' connections would all be refused.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    "--virtual-time-budget=20000",
]


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed; .ci/run installs Debian's `chromium` package")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


def render(url: str, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran; with ``screenshot``, a PNG of it as well."""
    with tempfile.TemporaryDirectory() as profile:
        command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run(
            [*command, "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        ).stdout
        if screenshot:
            subprocess.run(
                [*command, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True
            )
    return dom


def lstm_ae(
    project: Path, *args: str, env: dict[str, str] | None = None, quiet: bool = True
) -> subprocess.CompletedProcess:
    """`lstm-ae ARGS` in ``project`` (``-q`` unless not ``quiet``), which must succeed; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "lstm_ae", *args, *(["-q"] if quiet else [])],
        cwd=project,
        env={**cli_env(), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


# MLflow samples system metrics every 10 s by default; the tiny training run may end sooner.
SAMPLE_EVERY_SECOND = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train, evaluate and a 2-trial study, through the command line, into the project's store."""
    root = make_tiny_project(
        tmp_path_factory.mktemp("ui"), model=TINY_MODEL, train={"max_epochs": 2}, tune=TINY_TUNE
    )
    trained = lstm_ae(root, "train", env=SAMPLE_EVERY_SECOND, quiet=False)
    (root / "train.log").write_text(trained.stderr)  # the log lines, the runs link among them
    for command in (["evaluate"], ["tune"]):
        lstm_ae(root, *command)
    return root


@pytest.fixture(scope="module")
def ui(project: Path) -> Iterator[str]:
    chromium()  # skip or fail before starting a server
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            "sqlite:///mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=project,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, "mlflow ui exited"
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def runs(project: Path) -> tuple[mlflow.entities.Run, mlflow.entities.Run, list[mlflow.entities.Run]]:
    """(the pipeline's run, the study's run, the trial runs)."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10-lstm-autoencoder")
    found = client.search_runs([experiment.experiment_id])
    trials = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    (study,) = [r for r in found if r.info.run_name == "study-ui"]
    (pipeline,) = [r for r in found if "test_mse" in r.data.metrics]
    return pipeline, study, trials


def test_the_run_page_shows_the_test_mse(project: Path, ui: str, tmp_path: Path) -> None:
    run, _, _ = runs(project)
    shot = tmp_path / "run.png"
    dom = render(f"{ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}", shot)
    assert run.info.run_name in dom
    assert "test_mse" in dom and repr(run.data.metrics["test_mse"]) in dom
    assert "pca_test_mse" in dom and "model.encoder_widths" in dom
    assert shot.stat().st_size > 20_000


def test_the_artifacts_tab_shows_the_reconstruction_figure(project: Path, ui: str, tmp_path: Path) -> None:
    run, _, _ = runs(project)
    run_page = f"{ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    url = f"{run_page}/artifacts/evaluate/reconstructions.png"
    shot = tmp_path / "reconstructions.png"
    dom = render(url, shot)
    assert '<img alt="evaluate/reconstructions.png" src="blob:' in dom  # fetched from the server and shown
    assert shot.stat().st_size > 20_000


def test_the_study_run_shows_its_trials_and_best_value(project: Path, ui: str) -> None:
    _, study, trials = runs(project)
    assert len(trials) == 2
    dom = render(f"{ui}/#/experiments/{study.info.experiment_id}/runs/{study.info.run_id}")
    assert "study-ui" in dom and "best_val_mse" in dom
    for trial in trials:
        assert trial.info.run_name in dom
    trial = trials[0]
    dom = render(f"{ui}/#/experiments/{trial.info.experiment_id}/runs/{trial.info.run_id}")
    assert "val_loss" in dom and "latent_size" in dom and "study-ui" in dom  # the parent is linked


def ui_url(project: Path, base: str | None = None, env: dict[str, str] | None = None) -> str:
    """The URL that `make ui` prints, for the UI at ``base`` (default: where the store is browsed)."""
    code = f"from lstm_ae.tracking import ui; print(ui.ui_url({base!r}))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env={**cli_env(), **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def printed_runs_link(stderr: str) -> str:
    """The runs link a stage printed (its `runs: URL` log line)."""
    (line,) = [line for line in stderr.splitlines() if " runs: " in line]
    return line.split(" runs: ", 1)[1].split()[0]


def assert_runs_table(dom: str, run: mlflow.entities.Run) -> None:
    """The page is the runs table in the saved view, listing ``run`` with its test metrics as
    columns: not MLflow 3's GenAI overview, where an experiment opens by default, nor the error
    of a view that the store lacks ("share key test-metrics does not exist")."""
    assert ">Runs<" in dom and ">Overview<" not in dom and "does not exist" not in dom
    assert run.info.run_name in dom
    for name in ("test_mse", "test_psnr", "test_ssim"):  # as columns of the table, with the run's values
        assert f'col-id="metrics.`{name}`"' in dom and repr(run.data.metrics[name]) in dom
    assert "Sort: test_mse" in dom


def test_the_make_ui_url_lands_on_the_runs_table_with_the_test_metrics(
    project: Path, ui: str, tmp_path: Path
) -> None:
    """Not MLflow 3's GenAI overview, where an experiment opens by default and no run is listed."""
    run, _, _ = runs(project)
    url = ui_url(project, ui)
    assert url.startswith(f"{ui}/#/experiments/{run.info.experiment_id}/runs?")
    shot = tmp_path / "runs.png"
    assert_runs_table(render(url, shot), run)
    assert shot.stat().st_size > 20_000


def test_train_ends_with_the_runs_link_that_make_ui_prints(project: Path) -> None:
    line = [line for line in (project / "train.log").read_text().splitlines() if " runs: " in line]
    assert line and line[0].endswith("(serve them: `make ui`)")  # the project's store: a UI to start
    assert printed_runs_link(line[0]) == ui_url(project)
    assert printed_runs_link(line[0]).startswith("http://127.0.0.1:5000/#/experiments/")


def test_the_pipeline_run_has_system_metrics_and_its_data_set_as_input(project: Path, ui: str) -> None:
    run, _, _ = runs(project)
    assert "system/cpu_utilization_percentage" in run.data.metrics
    assert "system/system_memory_usage_megabytes" in run.data.metrics
    (data,) = run.inputs.dataset_inputs
    digest = run.data.tags["data_md5"]  # the archive's md5
    assert (data.dataset.name, data.dataset.digest) == ("cifar10", digest)
    assert "data/processed/cifar10.npz" in data.dataset.source
    assert {(tag.key, tag.value) for tag in data.tags} == {("mlflow.data.context", "training")}
    dom = render(f"{ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    assert re.search(rf"cifar10 \({digest}\)(\s|<[^>]*>)*training<", dom), "no data set with its context"
