"""Model-from-code entry point that MLflow logs with the model: loading it imports this file
instead of unpickling an object, so a logged model cannot carry arbitrary pickled code."""

import mlflow

from lstm_ae.serving.pyfunc import ReconstructionModel

mlflow.models.set_model(ReconstructionModel())
