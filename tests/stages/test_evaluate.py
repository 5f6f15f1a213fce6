"""Loading the model file (Keras safe mode, clear errors) and what evaluate reports for each task."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import matplotlib.image
import mlflow
import numpy as np
import pytest

from lstm_ae import cli
from lstm_ae.config import load_config
from lstm_ae.model.saved import ModelFileError, load_model
from lstm_ae.paths import EVAL_FIGURES, METRICS
from lstm_ae.stages.evaluate import ModelMismatchError, require_same_model
from tests.helpers.projects import REPO, make_tiny_project


def save_model_that_writes(marker: Path, path: Path) -> None:
    """A model whose Lambda layer writes ``marker`` whenever Keras calls it (also while loading)."""
    target = str(marker)  # a closure over a str serializes with the function; a Path would not
    inputs = keras.Input((32, 96))
    outputs = keras.layers.Lambda(lambda x: (open(target, "w").write("ran"), x)[1])(inputs)  # noqa: SIM115
    keras.Model(inputs, outputs).save(path)
    marker.unlink()  # building the model called the lambda once


def test_a_model_file_with_python_code_is_refused_and_the_code_never_runs(tmp_path: Path) -> None:
    marker, path = tmp_path / "marker", tmp_path / "model.keras"
    save_model_that_writes(marker, path)
    with pytest.raises(ModelFileError, match=r"refused to load: it holds Python code .* `dvc repro train`"):
        load_model(path)
    assert not marker.exists()
    # The control: without safe mode the same file runs the code while loading.
    keras.models.load_model(path, compile=False, safe_mode=False)
    assert marker.exists()


def test_a_file_that_is_not_a_keras_model_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ModelFileError, match="model.keras: not a readable Keras model file"):
        load_model(path)


def test_a_missing_model_names_the_train_stage(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `dvc repro train`"):
        load_model(tmp_path / "model.keras")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "family", "corruption", "input_psnr", "classical"),
    [
        ("denoise", "autoencoder", "Gaussian noise, sigma 0.1", (19.5, 21.5), ("tv", "wavelet", "nl_means")),
        ("deblur", "restorer", "Gaussian blur, sigma 1 px", (5, 15), ("wiener", "richardson_lucy")),
    ],
)
def test_a_restoration_task_reports_the_input_and_classical_baselines_next_to_the_output(
    task: str,
    family: str,
    corruption: str,
    input_psnr: tuple[float, float],
    classical: tuple[str, ...],
    tmp_path: Path,
    monkeypatch,
) -> None:
    """train + evaluate with task set: the floor metrics, the classical baselines with strengths
    chosen on validation images, the figure with a row each, the MLflow record and registry name."""
    for name in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    model = {"encoder_widths": [8], "decoder_widths": [8], "head": "dense", "family": family}
    model["restorer"] = {"features": 4, "units": 4, "blocks": 1}
    evaluate = {"classical_val_images": 20}
    project = make_tiny_project(tmp_path, task=task, model=model, train={"max_epochs": 1}, evaluate=evaluate)
    monkeypatch.chdir(project)
    assert cli.main(["train", "--quiet"]) == 0
    assert cli.main(["evaluate", "--quiet"]) == 0

    results = json.loads(METRICS.read_text())
    for prefix in ("test", "input_test", "pca_test", *(f"{m}_test" for m in classical)):
        assert all(np.isfinite(results[f"{prefix}_{m}"]) for m in ("mse", "psnr", "ssim")), prefix
    assert all(results[f"{m}_strength"] > 0 for m in classical)
    # Uniform random pixels: noise of sigma 0.1 (a little less after clipping) is about 20 dB; a
    # blur of white noise throws away most of it.
    assert input_psnr[0] < results["input_test_psnr"] < input_psnr[1]
    figure = matplotlib.image.imread(EVAL_FIGURES / "reconstructions.png")
    rows = 3 + len(classical)  # clean / corrupted / each baseline / restored, about 100 px each
    assert figure.shape[0] > 85 * rows

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cifar10-lstm-autoencoder").experiment_id])
    assert run.data.tags["task"] == task and run.data.tags["corruption"] == corruption
    assert run.data.tags["family"] == family
    assert run.data.params["task"] == task and run.data.params["corruption.noise_sigma"] == "0.1"
    assert run.data.metrics["input_test_psnr"] == pytest.approx(results["input_test_psnr"])
    assert run.data.metrics[f"{classical[0]}_test_psnr"] == pytest.approx(
        results[f"{classical[0]}_test_psnr"]
    )
    name = f"cifar10-lstm-{family}-{task}-sigma{'0.1' if task == 'denoise' else '1'}"
    assert run.data.tags["registered_model"] == f"{name}/1"

    # The restorer under the autoencoder's settings: refused in one line, the metrics kept.
    if family == "restorer":
        kept = METRICS.read_bytes()
        code = cli.main(["evaluate", "--quiet", "-S", "task=reconstruct", "-S", "model.family=autoencoder"])
        assert code == 1 and METRICS.read_bytes() == kept


def test_a_model_trained_under_other_settings_is_refused_naming_both() -> None:
    autoencoder = load_config(REPO / "params.yaml")
    restorer = load_config(REPO / "params.yaml", preset="denoise")
    require_same_model(None, autoencoder)  # a model from before train recorded it: nothing to check
    require_same_model(autoencoder.model_identity(), autoencoder)
    with pytest.raises(ModelMismatchError) as error:
        require_same_model(restorer.model_identity(), autoencoder)
    message = str(error.value)
    assert "\n" not in message
    assert "trained with task=denoise, corruption=Gaussian noise, sigma 0.1, model.family=restorer" in message
    assert "these settings say task=reconstruct, corruption=none, model.family=sweep_ae" in message
