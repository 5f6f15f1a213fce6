"""The logged model as MLflow serves it: images in, reconstructions and per-image error out.

`mlflow models serve` and `mlflow.pyfunc.load_model` call :class:`ReconstructionModel`; it
wraps the Keras file saved by train (loaded in safe mode) around :func:`inference.reconstruct`.
The model has no input signature on purpose: a fixed dtype would make MLflow cast JSON
integers (0-255 pixels) and decimals ([0, 1] pixels) alike, and the scale could no longer
be told from the data.
"""

from __future__ import annotations

import mlflow

from lstm_ae.serving.inference import reconstruct


class ReconstructionModel(mlflow.pyfunc.PythonModel):
    """predict(images (N, H, W, 3), integers 0-255 or floats in [0, 1]) ->
    {"reconstruction": (N, H, W, 3) float32 in [0, 1], "mse": (N,) per-image error}.

    H and W are 32 for the autoencoder; a restorer takes any one size per batch and keeps it.
    """

    # MLflow's type-hint validation would fix one input dtype (and warns when predict is untyped).
    _skip_type_hint_validation = True

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from pathlib import Path

        from lstm_ae.model.saved import load_model

        self.model = load_model(Path(context.artifacts["keras_model"]))

    def predict(self, context, model_input, params=None):
        recon, mse = reconstruct(self.model, model_input)
        return {"reconstruction": recon, "mse": mse}
