"""The logged model as MLflow serves it: images in, reconstructions and per-image error out.

`mlflow models serve` and `mlflow.pyfunc.load_model` call :class:`ReconstructionModel`; it
wraps the Keras file saved by train (loaded in safe mode) around :func:`inference.reconstruct`.
The model has no input signature on purpose: a fixed dtype would make MLflow cast JSON
integers (0-255 pixels) and decimals ([0, 1] pixels) alike, and the scale could no longer
be told from the data.
"""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST

from lstm_ae.serving.inference import (
    ImageInputError,
    check_batch_pixels,
    reconstruct,
    reconstruct_with_code,
    with_code,
)


class ImageRequestError(MlflowException, ImageInputError):
    """A request the model cannot take: HTTP 400 with the one-line reason as its whole message.

    MLflow's scoring server answers any other exception from predict with a generic message and
    the server's stack trace, and it prefixes an MlflowException's message with the request's
    whole array ("Failed to predict data '[[[...' ... Error: ..."). The message is therefore
    fixed when the error is made, and later assignments to it are ignored. Still an
    ImageInputError, so callers in the same process catch it as before.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, error_code=BAD_REQUEST)

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_reason"):  # the first assignment, by MlflowException.__init__
            self._reason = value


class ReconstructionModel(mlflow.pyfunc.PythonModel):
    """predict(images (N, H, W, 3), integers 0-255 or floats in [0, 1]) ->
    {"reconstruction": (N, H, W, 3) float32 in [0, 1], "mse": (N,) per-image error,
    "code": (N, code size) float32, the floats the image was rebuilt from (autoencoders only)}.

    H and W are 32 for the autoencoders; a restorer takes any one size per batch and keeps it.
    """

    # MLflow's type-hint validation would fix one input dtype (and warns when predict is untyped).
    _skip_type_hint_validation = True

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from pathlib import Path

        from lstm_ae.model.saved import load_model

        self.model = load_model(Path(context.artifacts["keras_model"]))
        self.coded = with_code(self.model)  # one pass gives the reconstruction and the code

    def predict(self, context, model_input, params=None):
        """Reconstruct the batch, or refuse it with :class:`ImageRequestError` (HTTP 400).

        Served, ``model_input`` is what MLflow made of the request's "inputs" or "instances":
        by then it has decoded the JSON, copied the lists and built one int64 or float64 array
        (lists of unequal lengths it refuses itself). A batch over inference.MAX_BATCH_PIXELS is
        refused from that array's shape, before the float32 copy, the model and the JSON answer,
        which cost several times more than the array.
        """
        try:
            check_batch_pixels(model_input)
            if self.coded is None:
                recon, mse = reconstruct(self.model, model_input)
                return {"reconstruction": recon, "mse": mse}
            recon, mse, code = reconstruct_with_code(self.coded, model_input)
        except ImageInputError as exc:
            raise ImageRequestError(str(exc)) from None
        return {"reconstruction": recon, "mse": mse, "code": code}
