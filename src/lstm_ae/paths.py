"""Where each stage reads and writes, relative to the project root; dvc.yaml declares the same paths."""

from pathlib import Path

from lstm_ae.errors import UserError

RAW_ARCHIVE = Path("data/raw/cifar-10-python.tar.gz")
PROCESSED = Path("data/processed/cifar10.npz")

EDA_FIGURES = Path("reports/eda/figures")
EDA_METRICS = Path("reports/eda/metrics.json")

MODEL = Path("models/model.keras")
RUN_INFO = Path("models/mlflow_run.json")
SERVED_MODEL = Path("models/served")  # the MLflow model of model.keras
HISTORY = Path("reports/train/history.csv")
LOSS_FIGURE = Path("reports/train/loss.png")

METRICS = Path("reports/metrics.json")
PER_CLASS = Path("reports/evaluate/per_class.csv")
EVAL_FIGURES = Path("reports/evaluate/figures")

TUNE_BEST = Path("reports/tune/best_params.yaml")
TUNE_SUMMARY = Path("reports/tune/summary.json")
TUNE_TRIALS = Path("reports/tune/trials.csv")
TUNE_FIGURES = Path("reports/tune/figures")


class MissingInputError(UserError, FileNotFoundError):
    """A stage's input is absent; the message names the stage that makes it."""


def require(path: Path, made_by: str) -> Path:
    """Return ``path`` if it exists, else fail with the command that creates it."""
    if not path.exists():
        raise MissingInputError(f"{path} not found; run `dvc repro {made_by}` (or `lstm-ae {made_by}`) first")
    return path
