"""The serving room: images in, reconstructions out; the MLflow pyfunc; `lstm-ae reconstruct`."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``lstm_ae.serving.ReconstructionModel``: where models logged before 57f6aa2 import it from.

    Before 57f6aa2 this package was one module, serving.py, and a logged model's own entry file
    (served_model.py, in the model's folder) runs ``from lstm_ae.serving import ReconstructionModel``.
    MLflow only puts the model's code/ folder first on sys.path; a process that has already
    imported lstm_ae (``lstm-ae reconstruct --model models:/...``) keeps this package, so the name
    must be found here. Imported on first use, so the rest of the room does not pull in MLflow.
    """
    if name == "ReconstructionModel":
        from lstm_ae.serving.pyfunc import ReconstructionModel

        return ReconstructionModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
