"""End to end: the real `dvc repro` in a copy of this repository, on archives in the official format.

These run the actual stages as subprocesses (as a user would), so they are marked slow.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from dvc.utils.hydra import compose_and_dump

from lstm_ae.config import Config, load_config
from lstm_ae.tracking.runs import flatten_params
from tests.helpers.archives import make_archive, official_contents
from tests.helpers.servers import model_server, post_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MIRROR_TOOL = REPO.parent / "shared" / "cifar10" / "build_tarball.py"
# The default family (the sweep autoencoder) with an 8-float code, and a small LSTM autoencoder for
# the presets that choose it.
TINY_MODEL = {
    "model.sweep.code_size": 8,
    "model.sweep.features": 4,
    "model.sweep.units": 4,
    "model.sweep.patch": 4,
    "model.encoder_widths": [16, 8],
    "model.decoder_widths": [8],
    "train.max_epochs": 2,
}
SWEEP = "cifar10-lstm-sweep-autoencoder"
PRESETS = sorted(p.stem for p in (REPO / "conf" / "preset").glob("*.yaml"))


def tracking_params(cfg: Config) -> dict[str, object]:
    """The settings as MLflow records them (dotted keys, lists for tuples), as plain values."""
    return flatten_params(cfg.model_dump(mode="json"))


def tool_env() -> dict[str, str]:
    """This interpreter's bin folder first, so `python` and `dvc` are the ones under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def sh(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=project, env=tool_env(), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def copy_project(dest: Path) -> Path:
    """A fresh git repository holding the tracked and untracked-but-not-ignored files of this one."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "config", "user.email", "test@lstm-ae")
    sh(dest, "git", "config", "user.name", "lstm-ae tests")
    commit(dest, "copy of the project under test")
    return dest


def commit(project: Path, message: str) -> None:
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", message, "--allow-empty")


def set_keys(path: Path, values: dict[str, object]) -> None:
    """Set dotted keys in a YAML settings file, as a user editing it would."""
    settings = yaml.safe_load(path.read_text())
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        section = settings
        for key in parents:
            section = section[key]
        section[leaf] = value
    path.write_text(yaml.safe_dump(settings, sort_keys=False))


def set_params(project: Path, values: dict[str, object]) -> None:
    """Edit conf/config.yaml as a user changes a setting for good, and compose params.yaml from it as
    `dvc exp run` does, so both plain `dvc repro` and later experiments use the values."""
    set_keys(project / "conf" / "config.yaml", values)
    compose_and_dump(project / "params.yaml", str(project / "conf"), None, "config", str(project), [])


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def project_runs(project: Path) -> list[mlflow.entities.Run]:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["cifar10-lstm-autoencoder"], output_format="list")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after one `dvc repro` on a tiny archive (40 images a batch) and a tiny model."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    archive = make_archive(
        tmp_path_factory.mktemp("archive") / "tiny.tar.gz", official_contents(per_batch=40)
    )
    set_params(
        project,
        {"fetch.url": str(archive), "fetch.md5": md5(archive), "eda.scatter_samples": 500, **TINY_MODEL},
    )
    commit(project, "tiny settings")
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


def is_param(column: str) -> bool:
    """A column of `dvc exp show` that holds a key of params.yaml a stage lists (a section listed
    whole, such as model.restorer, shows as one column per key)."""
    return any(column == key or column.startswith(f"{key}.") for key in PARAM_KEYS)


def shown_params(project: Path, experiment: str) -> dict[str, object]:
    """The params.yaml columns of one experiment's row in `dvc exp show --csv`, read as YAML values
    (the CSV leaves a null empty)."""
    table = list(csv.DictReader(io.StringIO(sh(project, "dvc", "exp", "show", "--csv").stdout)))
    (row,) = [r for r in table if r["Experiment"] == experiment]
    return {
        key: None if value == "" else yaml.safe_load(value) for key, value in row.items() if is_param(key)
    }


def logged_value(text: str) -> object:
    """An MLflow param read back as a value: MLflow stores str(value), so null is 'None'."""
    return None if text == "None" else yaml.safe_load(text)


# The keys the pipeline's stages list in dvc.yaml: what `dvc exp show` has columns for.
PARAM_KEYS = {
    key
    for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values()
    for key in stage["params"]
}


# Each preset as `dvc exp run -S preset=NAME` runs it, and one with the user's -S on top. The
# report's 200 epochs at patience 10 run to the end on the tiny data (7.5 minutes): 2 on top.
PRESET_RUNS = [
    [f"preset={name}", "train.max_epochs=2"] if name == "report" else [f"preset={name}"] for name in PRESETS
] + [["preset=smoke", "train.max_epochs=3"]]


@pytest.mark.parametrize("overrides", PRESET_RUNS, ids=["+".join(o) for o in PRESET_RUNS])
def test_dvc_exp_show_lists_what_each_preset_experiment_ran(pipeline: Path, overrides: list[str]) -> None:
    """What `dvc exp show` lists == the run's MLflow params == the settings the stage loaded, for each
    preset, and a -S given on top of a preset wins over it. Up to train: evaluate reads no model setting.
    The model is shrunk for time in the fixture's conf/config.yaml only where a preset names no value,
    so every value a preset sets is the preset's own."""
    name = "exp-" + "-".join(o.replace("=", "").replace(".", "").replace("_", "") for o in overrides)
    args = [arg for override in overrides for arg in ("-S", override)]
    sh(pipeline, "dvc", "exp", "run", "train", "--name", name, *args)
    loaded = tracking_params(load_config(pipeline / "params.yaml"))
    (run,) = [r for r in project_runs(pipeline) if r.data.tags.get("dvc_exp_name") == name]
    shown = shown_params(pipeline, name)
    assert shown.keys() == {key for key in loaded if is_param(key)}
    for key, value in shown.items():
        assert value == loaded[key], f"{key}: dvc exp show says {value!r}, the stage loaded {loaded[key]!r}"
        assert logged_value(run.data.params[key]) == loaded[key], (
            f"{key}: MLflow has {run.data.params[key]!r}"
        )
    for override in overrides[1:]:  # the user's -S on top of the preset
        key, value = override.split("=")
        assert loaded[key] == yaml.safe_load(value)


def test_pipeline_on_a_real_cifar10_subset_from_the_mirror(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The report's architecture on 2,000/500 real images, through the mirror option users have."""
    if not MIRROR_TOOL.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{MIRROR_TOOL} is missing; CI must run the pipeline on the CIFAR-10 mirror")
        pytest.skip(f"no CIFAR-10 mirror at {MIRROR_TOOL}")
    archive = tmp_path_factory.mktemp("mirror") / "cifar-10-subset.tar.gz"
    subprocess.run(
        [sys.executable, str(MIRROR_TOOL), str(archive), "--limit-train", "2000", "--limit-test", "500"],
        check=True,
        capture_output=True,
    )
    project = copy_project(tmp_path_factory.mktemp("mirror-project"))
    # The report's architecture, set the way the README's "report's recipe" command sets it.
    sh(
        project,
        "dvc",
        "exp",
        "run",
        "-S",
        f"fetch.url={archive.as_uri()}",
        "-S",
        f"fetch.md5={md5(archive)}",
        "-S",
        "model.family=autoencoder",
        "-S",
        "model.encoder_widths=[512,256]",
        "-S",
        "model.decoder_widths=[256]",
        "-S",
        "model.head=lstm",
        "-S",
        "model.bidirectional=false",
        "-S",
        "model.row_index=false",
        "-S",
        "train.max_epochs=3",
    )
    metrics = json.loads((project / "reports/metrics.json").read_text())
    eda = json.loads((project / "reports/eda/metrics.json").read_text())
    assert abs(eda["brightness_mean"] - 0.47) < 0.02 and abs(eda["brightness_var"] - 0.063) < 0.01
    # Three short epochs on 1,600 images must already beat predicting the mean image.
    assert metrics["test_mse"] < metrics["mean_image_test_mse"]
    (run,) = project_runs(project)
    assert (
        run.data.params["model.encoder_widths"] == "[512, 256]"
        and run.data.params["param_count"] == "2695552"
    )
