"""Load a saved Keras model file for inference, in safe mode, with an error that says what to do."""

from __future__ import annotations

from pathlib import Path

import keras

from lstm_ae.errors import UserError
from lstm_ae.model import autoencoder as _autoencoder  # noqa: F401 - registers the model's own layers for load_model
from lstm_ae.model import restorer as _restorer  # noqa: F401 - registers the restorer's layers likewise
from lstm_ae.model import sweep_ae as _sweep_ae  # noqa: F401 - and the sweep autoencoder's
from lstm_ae.paths import MODEL, require


class ModelFileError(UserError, ValueError):
    """The model file cannot be loaded, or not safely; the message says what to do."""


def load_model(path: Path = MODEL) -> keras.Model:
    """Load for inference only, in Keras safe mode: a model file cannot run arbitrary code
    (a Lambda layer's Python function is refused, not called)."""
    try:
        return keras.models.load_model(require(path, made_by="train"), compile=False, safe_mode=True)
    except ValueError as exc:
        if "safe_mode" in str(exc):
            raise ModelFileError(
                f"{path}: refused to load: it holds Python code (a Lambda layer) that Keras safe mode does "
                "not run. Write it again with `dvc repro train`"
            ) from exc
        raise ModelFileError(
            f"{path}: not a readable Keras model file; write it again with `dvc repro train`"
        ) from exc
