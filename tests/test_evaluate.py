"""Loading the model file: Keras safe mode, so a model file cannot run code; clear errors."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest

from lstm_ae.stages.evaluate import ModelFileError, load_model


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
