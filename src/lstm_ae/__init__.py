"""LSTM autoencoder experiments on CIFAR-10: a DVC pipeline tracked in MLflow, tuned with Optuna."""

__version__ = "0.1.0"
