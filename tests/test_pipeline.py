"""End to end: the real `dvc repro` in a copy of this repository, on archives in the official format.

These run the actual stages as subprocesses (as a user would), so they are marked slow. The presets'
experiments are in test_preset_experiments.py, the report's model on the mirror in test_mirror_subset.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.helpers.repos import REPO, project_runs, set_keys, sh, tiny_project, tool_env
from tests.helpers.servers import model_server, post_json

pytestmark = pytest.mark.slow

SWEEP = "cifar10-lstm-sweep-autoencoder"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after one `dvc repro` on a tiny archive (40 images a batch) and a tiny model."""
    project = tiny_project(tmp_path_factory.mktemp("project"), tmp_path_factory.mktemp("archive"))
    sh(project, "dvc", "repro")
    return project


def test_repro_writes_metrics_history_and_figures(pipeline: Path) -> None:
    metrics = json.loads((pipeline / "reports/metrics.json").read_text())
    for key in ("test_mse", "test_psnr", "test_ssim", "pca_test_mse", "pca_test_psnr", "pca_test_ssim"):
        assert np.isfinite(metrics[key]), key
    assert "input_test_mse" not in metrics  # reconstruct: the input is the clean image itself
    assert 0 < metrics["test_mse"] < 1 and -1 <= metrics["test_ssim"] <= 1
    history = (pipeline / "reports/train/history.csv").read_text().splitlines()
    assert history[0] == "epoch,loss,val_loss" and len(history) == 3
    eda = json.loads((pipeline / "reports/eda/metrics.json").read_text())
    assert 0.4 < eda["brightness_mean"] < 0.6  # uniform random pixels: mean 0.5
    figures = [
        "reports/eda/figures/samples.png",
        "reports/eda/figures/pixel_histogram.png",
        "reports/eda/figures/channel_correlation.png",
        "reports/eda/figures/channel_scatter_matrix.png",
        "reports/train/loss.png",
        "reports/evaluate/figures/reconstructions.png",
        "reports/evaluate/figures/best_worst.png",
    ]
    for name in figures:
        assert (pipeline / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    per_class = (pipeline / "reports/evaluate/per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,model_mse,pca_mse" and len(per_class) == 11


def test_one_mlflow_run_holds_the_whole_execution(pipeline: Path) -> None:
    (run,) = project_runs(pipeline)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.learning_rate"] == "0.006"
    assert run.data.params["model.family"] == "sweep_ae" and run.data.params["model.sweep.code_size"] == "8"
    assert run.data.params["fetch.md5"] == run.data.tags["data_md5"]
    assert (
        run.data.tags["mlflow.source.git.commit"] == sh(pipeline, "git", "rev-parse", "HEAD").stdout.strip()
    )
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    metrics = json.loads((pipeline / "reports/metrics.json").read_text())
    assert run.data.metrics["test_mse"] == pytest.approx(metrics["test_mse"])
    assert "test_mse_airplane" in run.data.metrics and "brightness_mean" in run.data.metrics
    artifacts = {
        f.path
        for folder in ("eda", "train", "evaluate")
        for f in client.list_artifacts(run.info.run_id, folder)
    }
    assert {
        "eda/samples.png",
        "train/loss.png",
        "evaluate/reconstructions.png",
        "evaluate/best_worst.png",
    } <= artifacts
    assert run.info.artifact_uri.startswith((pipeline / "mlartifacts").as_uri())


def test_logged_model_loads_and_reconstructs(pipeline: Path) -> None:
    (run,) = project_runs(pipeline)
    (logged,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    model = mlflow.pyfunc.load_model(logged.model_uri)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = model.predict(images)
    assert out["reconstruction"].shape == (3, 32, 32, 3) and np.all(
        (out["reconstruction"] >= 0) & (out["reconstruction"] <= 1)
    )
    assert out["mse"] == pytest.approx(
        ((images / 255 - out["reconstruction"]) ** 2).mean(axis=(1, 2, 3)), rel=1e-4
    )


def test_evaluate_registers_the_model_as_champion(pipeline: Path) -> None:
    (run,) = project_runs(pipeline)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{pipeline / 'mlflow.db'}")
    champion = client.get_model_version_by_alias(SWEEP, "champion")
    metrics = json.loads((pipeline / "reports/metrics.json").read_text())
    assert champion.run_id == run.info.run_id
    assert float(champion.tags["test_mse"]) == pytest.approx(metrics["test_mse"])
    assert run.data.tags["champion"] == "True" and run.data.tags["registered_model"] == f"{SWEEP}/1"


def test_reconstruct_command_takes_the_registered_champion(pipeline: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(image)
    result = sh(
        pipeline,
        "lstm-ae",
        "reconstruct",
        str(image),
        "--model",
        f"models:/{SWEEP}@champion",
        "--out",
        str(tmp_path / "out"),
    )
    assert "photo.png: 40x40, resized to 32x32" in result.stderr
    lines = (tmp_path / "out" / "errors.csv").read_text().splitlines()
    assert lines[0] == "rank,file,mse,psnr,original_size,model_size,figure"
    assert lines[1].startswith(f"1,{image},") and lines[1].endswith(",40x40,32x32,photo.png")
    assert (tmp_path / "out" / "photo.png").is_file()


def test_mlflow_models_serve_answers_with_reconstructions_and_errors(pipeline: Path, tmp_path: Path) -> None:
    """The README's command, on loopback: integers 0-255 and floats in [0, 1] give the same answer."""
    env = {**tool_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{pipeline / 'mlflow.db'}"}
    champion = f"models:/{SWEEP}@champion"
    with model_server(champion, pipeline, env, tmp_path / "server.log", ready_s=180) as base:
        images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        status, answer = post_json(f"{base}/invocations", {"inputs": images.tolist()})
        assert status == 200, answer
        predictions = answer["predictions"]
        recon, mse = np.asarray(predictions["reconstruction"]), np.asarray(predictions["mse"])
        assert recon.shape == (2, 32, 32, 3) and mse.shape == (2,)
        assert np.asarray(predictions["code"]).shape == (2, 8)  # the floats each image was decoded from
        status, as_floats = post_json(f"{base}/invocations", {"inputs": (images / 255).tolist()})
        assert status == 200 and np.asarray(as_floats["predictions"]["mse"]) == pytest.approx(mse, rel=1e-4)
        status, refused = post_json(f"{base}/invocations", {"inputs": images[:, :16].tolist()})
        assert status >= 400 and "expected images of shape (N, 32, 32, 3)" in json.dumps(refused)


def test_second_repro_does_nothing(pipeline: Path) -> None:
    before = (pipeline / "models/model.keras").stat().st_mtime_ns
    result = sh(pipeline, "dvc", "repro")
    assert "Data and pipelines are up to date" in result.stdout
    assert "Running stage" not in result.stdout
    assert (pipeline / "models/model.keras").stat().st_mtime_ns == before
    assert len(project_runs(pipeline)) == 1


def test_dvc_metrics_and_plots_show(pipeline: Path, tmp_path: Path) -> None:
    shown = sh(pipeline, "dvc", "metrics", "show")
    assert "test_mse" in shown.stdout and "pca_test_mse" in shown.stdout and "brightness_mean" in shown.stdout
    assert "failed to load" not in shown.stderr  # no study has run: its summary must not be missed
    sh(pipeline, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "val_loss" in html and "reconstructions.png" in html


def test_bad_md5_fails_cleanly_and_keeps_previous_outputs(pipeline: Path) -> None:
    archive = pipeline / "data/raw/cifar-10-python.tar.gz"
    kept = {
        p: p.read_bytes()
        for p in (archive, pipeline / "reports/metrics.json", pipeline / "models/model.keras")
    }
    set_keys(pipeline / "params.yaml", {"fetch.md5": "0" * 32})  # by hand, for this `dvc repro` alone
    try:
        result = sh(pipeline, "dvc", "repro", check=False)
    finally:
        sh(pipeline, "git", "checkout", "params.yaml")
    assert result.returncode != 0
    assert "error: " in result.stderr and "md5" in result.stderr and "Traceback" not in result.stderr
    for path, content in kept.items():
        assert path.read_bytes() == content, path


def test_queued_experiment_lands_in_the_project_store(pipeline: Path) -> None:
    """`dvc exp run --queue` runs in a temporary copy; its MLflow run must still reach our store, and
    a preset file not yet committed still counts (DVC composes params.yaml before it queues)."""
    preset = pipeline / "conf" / "preset" / "queued.yaml"
    preset.write_text("# @package _global_\npreset: queued\ntrain:\n  max_epochs: 1\n", encoding="utf-8")
    try:
        sh(pipeline, "dvc", "exp", "run", "--queue", "-S", "preset=queued")
    finally:
        preset.unlink()
    sh(pipeline, "dvc", "queue", "start", "-j", "1")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = sh(pipeline, "dvc", "queue", "status").stdout
        if "Success" in status or "Failed" in status:
            break
        time.sleep(3)
    sh(pipeline, "dvc", "queue", "stop", "--kill", check=False)
    assert "Success" in status, status
    queued = [r for r in project_runs(pipeline) if r.data.params.get("preset") == "queued"]
    assert len(queued) == 1
    (run,) = queued
    assert run.data.params["train.max_epochs"] == "1"
    assert run.data.tags.get("dvc_exp_name") and "test_mse" in run.data.metrics
    assert run.info.artifact_uri.startswith((pipeline / "mlartifacts").as_uri())
    shown = json.loads(sh(pipeline, "dvc", "exp", "show", "--json").stdout)
    assert run.data.tags["dvc_exp_name"] in json.dumps(shown)


def test_exp_run_with_a_restoration_task_retrains_and_reports_the_floor(pipeline: Path) -> None:
    """`dvc exp run -S task=deblur`: train and evaluate rerun (fetch to eda do not), and the metrics
    gain the corrupted input's scores. It and the tests after it on `pipeline` change the workspace."""
    result = sh(pipeline, "dvc", "exp", "run", "-S", "task=deblur")
    assert "Running stage 'train'" in result.stdout and "Running stage 'preprocess'" not in result.stdout
    metrics = json.loads((pipeline / "reports/metrics.json").read_text())
    assert metrics["input_test_psnr"] < 20 and np.isfinite(metrics["test_psnr"])
    runs = [r for r in project_runs(pipeline) if r.data.tags.get("task") == "deblur"]
    assert len(runs) == 1 and runs[0].data.tags["corruption"] == "Gaussian blur, sigma 1 px"
    assert "input_test_ssim" in runs[0].data.metrics
    shown = sh(pipeline, "dvc", "exp", "show", "--json").stdout
    assert '"task": "deblur"' in shown
    # The default table: test metrics before the data statistics, the keys users change before the rest.
    header = sh(pipeline, "dvc", "exp", "show", "--csv").stdout.splitlines()[0].split(",")
    assert header.index("test_mse") < header.index("input_test_psnr") < header.index("brightness_mean")
    assert (
        header.index("task")
        < header.index("model.head")
        < header.index("train.learning_rate")
        < header.index("fetch.url")
    )
    # `make exps`: the same table without hashes and rarely changed settings.
    hidden = next(
        line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("EXPS_HIDDEN")
    )
    compact = sh(pipeline, "dvc", "exp", "show", "--csv", "--drop", hidden.split(":=", 1)[1].strip()).stdout
    # State and Executor appear once an experiment has been queued (an earlier test does): they stay visible.
    bookkeeping = ("Experiment", "rev", "typ", "parent", "State", "Executor")
    columns = [c for c in compact.splitlines()[0].split(",") if c not in bookkeeping]
    assert columns == [
        "test_mse",
        "test_psnr",
        "test_ssim",
        "pca_test_mse",
        "input_test_mse",
        "input_test_psnr",
        "input_test_ssim",
        "wiener_test_psnr",  # the classical baselines' PSNR; their SSIM, MSE and strength are hidden
        "richardson_lucy_test_psnr",
        "preset",
        "seed",
        "task",
        "corruption.blur_sigma",
        "corruption.noise_sigma",
        "model.family",
        "model.encoder_widths",
        "model.decoder_widths",
        "model.head",
        "model.bidirectional",
        "model.row_index",
        "model.precision",
        "model.restorer.features",
        "model.restorer.units",
        "model.restorer.blocks",
        "model.restorer.sweeps",
        "model.sweep.code_size",
        "model.sweep.linear_rate",
        "model.sweep.patch",
        "model.sweep.features",
        "model.sweep.units",
        "model.sweep.blocks",
        "model.sweep.sweeps",
        "train.learning_rate",
        "train.batch_size",
        "train.max_epochs",
        "train.patience",
        "train.schedule",
        "train.global_clipnorm",
    ]
