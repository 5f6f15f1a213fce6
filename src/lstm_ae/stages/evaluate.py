"""evaluate: score the model on the test set next to PCA at the same code size (and, for deblur and
denoise, the corrupted input and classical restorations), in the training run."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import mlflow
import numpy as np

from lstm_ae import figures, metrics
from lstm_ae.atomic import atomic_dir, write_text
from lstm_ae.baselines import classical
from lstm_ae.baselines.pca import pca_reconstruct
from lstm_ae.config import Config
from lstm_ae.data.corruption import Corruption
from lstm_ae.data.dataset import Dataset, load_dataset
from lstm_ae.data.sequences import to_images
from lstm_ae.errors import UserError
from lstm_ae.model.fit import keras_verbosity
from lstm_ae.model.saved import load_model
from lstm_ae.paths import (
    EDA_FIGURES,
    EDA_METRICS,
    EVAL_FIGURES,
    METRICS,
    MODEL,
    PER_CLASS,
    PROCESSED,
    RUN_INFO,
)
from lstm_ae.tracking import registry, runs, store, ui

log = logging.getLogger(__name__)


def per_class_csv(model_summary: dict[str, float], pca_summary: dict[str, float], class_names) -> str:
    rows = ["class,model_mse,pca_mse"]
    # A small test set may lack a class.
    present = [c for c in class_names if metrics.key(metrics.MODEL, "mse", c) in model_summary]
    rows += [
        f"{c},{model_summary[metrics.key(metrics.MODEL, 'mse', c)]:.8g},"
        f"{pca_summary[metrics.key(metrics.PCA, 'mse', c)]:.8g}"
        for c in present
    ]
    return "\n".join(rows) + "\n"


def example_indices(labels: np.ndarray, n: int) -> list[int]:
    """The first test image of each of the first ``n`` classes: the report's figure, one per class."""
    return [int(np.flatnonzero(labels == k)[0]) for k in range(n) if np.any(labels == k)]


def subset_suffix(cfg: Config) -> str:
    """A model trained and tested on a subset registers apart (e.g. ``-subset2000-500``): its test
    MSE is measured on other images, so it must not compete for `champion` with full-data models."""
    limits = (cfg.preprocess.max_train_images, cfg.preprocess.max_test_images)
    if limits == (None, None):
        return ""
    return "-subset" + "-".join("all" if n is None else str(n) for n in limits)


def register(run_id: str, test_mse: float, name: str) -> None:
    """Register the run's model; `champion` moves to it only if its test MSE is the best so far."""
    try:
        version, crowned = registry.register_model(run_id, test_mse, name)
    except mlflow.exceptions.MlflowException as exc:  # e.g. the training run is in another store
        log.warning(
            "model not registered: run %s has no logged model here (%s)", run_id, str(exc).splitlines()[0]
        )
        return
    mlflow.set_tags({"registered_model": f"{name}/{version}", "champion": str(crowned)})
    log.info(
        "registered %s version %s%s",
        name,
        version,
        f" as @{registry.CHAMPION}"
        if crowned
        else f"; @{registry.CHAMPION} stays (test MSE {test_mse:.5f} does not beat it)",
    )


def examples_figure(clean, inputs, outputs, picks, titles, restoring: bool, baselines=None):
    """The report's figure (originals over reconstructions), or clean / corrupted / each classical
    baseline / restored rows."""
    if not restoring:
        return figures.reconstructions(clean[picks], outputs[picks], titles=titles)
    baselines = baselines or {}
    return figures.reconstructions(
        clean[picks],
        inputs[picks],
        extra=[*(images[picks] for images in baselines.values()), outputs[picks]],
        titles=titles,
        rows=("clean", "corrupted", *baselines, "restored"),
    )


def classical_baselines(
    cfg: Config, data: Dataset, corruption: Corruption, input_images: np.ndarray
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each classical method of the task, its strength chosen by mean PSNR on the first
    evaluate.classical_val_images corrupted validation images, applied to the test inputs.

    Returns the strengths chosen (``{method}_strength``) and each method's restored test images.
    The validation inputs are corrupted with the same fixed seed as training's validation set.
    """
    n = min(cfg.evaluate.classical_val_images, len(data.x_val))
    clean_val = to_images(data.x_val[:n])
    val_inputs = to_images(corruption.fixed(data.x_val[:n], cfg.seed, "val"))
    strengths, restored = {}, {}
    for method in classical.methods(corruption.task):
        best, _ = classical.tune_strength(method, val_inputs, clean_val, corruption.strength, n_jobs=-1)
        strengths[f"{method}_strength"] = best
        restored[method] = classical.restore(method, input_images, best, corruption.strength, n_jobs=-1)
        log.info("%s: strength %g chosen on %d validation images", method, best, n)
    return strengths, restored


class ModelMismatchError(UserError):
    """The model file was trained under other task, corruption or model settings than these."""


def require_same_model(recorded: dict | None, cfg: Config) -> None:
    """Refuse to score a model under settings it was not trained with: a restorer trained for
    denoise and evaluated as the autoencoder would be scored on clean inputs and registered under
    the autoencoder's name, where it could take the `champion` alias. ``recorded`` is what train
    wrote beside the model (None for a model from before it did: nothing to check)."""
    if not recorded:
        return
    ours = runs.flatten_params(cfg.model_identity())
    theirs = runs.flatten_params(recorded)
    differ = [key for key in ours if key in theirs and theirs[key] != ours[key]]
    if differ:
        trained = ", ".join(f"{key}={theirs[key]}" for key in differ)
        given = ", ".join(f"{key}={ours[key]}" for key in differ)
        raise ModelMismatchError(
            f"{MODEL} was trained with {trained} ({RUN_INFO}), but these settings say {given}; "
            "evaluate it with the settings it was trained with (the same --preset and -S), or train again"
        )


@dataclass(frozen=True)
class TestImages:
    """The test set as evaluate scores it, (N, 32, 32, 3) each: the clean images, the model's
    input (the clean images again for reconstruct) and the model's output."""

    clean: np.ndarray
    inputs: np.ndarray
    outputs: np.ndarray


@dataclass(frozen=True)
class Scores:
    """What evaluate measured: the headline scores (reports/metrics.json), every summary with its
    per-class numbers (logged to MLflow) and each classical method's restored test images."""

    results: dict[str, float]
    summaries: dict[str, dict[str, float]]
    baselines: dict[str, np.ndarray]


def run(cfg: Config) -> dict[str, float]:
    """Score the model's output for the task against the clean test images, next to the corrupted
    input itself (the floor a restoration must beat) and PCA at the same code size; write
    reports/metrics.json and the figures, and log both into the training run."""
    trained = json.loads(RUN_INFO.read_text()) if RUN_INFO.exists() else {}
    require_same_model(trained.get("model_identity"), cfg)
    data = load_dataset(PROCESSED).scaled()
    inputs = cfg.input_corruption.fixed(data.x_test, cfg.seed, "test")  # the same inputs on every run
    outputs = load_model().predict(inputs, batch_size=512, verbose=keras_verbosity())
    images = TestImages(to_images(data.x_test), to_images(inputs), to_images(outputs))
    scores = score(cfg, data, images, inputs)
    drawn = draw(cfg, data, images, scores.baselines)
    with atomic_dir(EVAL_FIGURES) as folder:
        for name, figure in drawn.items():
            figure.savefig(folder / f"{name}.png", dpi=100)
    write_text(
        PER_CLASS,
        per_class_csv(scores.summaries[metrics.MODEL], scores.summaries[metrics.PCA], data.class_names),
    )
    write_text(METRICS, json.dumps(scores.results, indent=2) + "\n")
    experiment_id = log_to_run(cfg, data, trained.get("run_id"), scores, drawn)
    report(cfg, scores)
    log.info("%s", ui.runs_link(experiment_id))
    return scores.results


def score(cfg: Config, data: Dataset, images: TestImages, inputs: np.ndarray) -> Scores:
    """The model, PCA (fitted on the clean training images, projecting the same test inputs) and,
    for deblur and denoise, the corrupted input and each classical method, on the clean images."""
    corruption = cfg.input_corruption
    pca = to_images(pca_reconstruct(data.x_train, inputs, cfg.model.latent_size, seed=cfg.seed))
    scored = {metrics.MODEL: images.outputs, metrics.PCA: pca}
    strengths: dict[str, float] = {}
    baselines: dict[str, np.ndarray] = {}
    if not corruption.is_identity:
        scored[metrics.INPUT] = images.inputs
        if cfg.evaluate.classical:
            strengths, baselines = classical_baselines(cfg, data, corruption, images.inputs)
            scored |= {metrics.classical_prefix(method): out for method, out in baselines.items()}
    summaries = {
        prefix: metrics.summarize(images.clean, out, data.y_test, data.class_names, prefix=prefix)
        for prefix, out in scored.items()
    }
    results = {
        name: value
        for prefix in summaries
        for name, value in metrics.headline(summaries[prefix], prefix).items()
    }
    results["mean_image_test_mse"] = float(np.mean((data.x_test - data.x_train.mean(axis=0)) ** 2))
    return Scores({**results, **strengths}, summaries, baselines)


def draw(cfg: Config, data: Dataset, images: TestImages, baselines: dict[str, np.ndarray]) -> dict:
    """The report's figure (one test image per class, with the classical restorations for deblur
    and denoise) and the best and worst reconstructions."""
    picks = example_indices(data.y_test, cfg.evaluate.examples)
    titles = [data.class_names[data.y_test[i]] for i in picks]
    restoring = not cfg.input_corruption.is_identity
    errors = metrics.mse_per_image(images.clean, images.outputs)
    return {
        "reconstructions": examples_figure(
            images.clean, images.inputs, images.outputs, picks, titles, restoring, baselines
        ),
        "best_worst": figures.best_worst(images.clean, images.outputs, errors, k=cfg.evaluate.best_worst),
    }


def log_to_run(cfg: Config, data: Dataset, run_id: str | None, scores: Scores, drawn: dict) -> str:
    """Log the scores, figures and the EDA's outputs into the training run (or a new run) and
    register the model under its family's, task's and data's name; the experiment's id."""
    store.use_project_store()
    corruption = cfg.input_corruption
    with (
        runs.resume_or_start(run_id, tags=runs.run_tags(data.archive_md5)),
        runs.ended_as_it_failed(),
    ):
        logged = {name: value for summary in scores.summaries.values() for name, value in summary.items()}
        mlflow.log_metrics(logged | scores.results)
        runs.log_figures(drawn, "evaluate")
        if EDA_METRICS.exists():
            mlflow.log_metrics(json.loads(EDA_METRICS.read_text()))
        for path in sorted(EDA_FIGURES.glob("*.png")):
            mlflow.log_artifact(str(path), "eda")
        mlflow.set_tags(runs.task_tags(corruption, cfg.model.family))
        name = registry.registered_name(corruption, cfg.model.family) + subset_suffix(cfg)
        register(mlflow.active_run().info.run_id, scores.results[metrics.key(metrics.MODEL, "mse")], name)
        return mlflow.active_run().info.experiment_id


def report(cfg: Config, scores: Scores) -> None:
    """The scores in a few log lines: the model beside PCA, then the corrupted input and each
    classical method for deblur and denoise."""
    results, model = scores.results, metrics.MODEL
    log.info(
        "test MSE %.5f (PCA-%d %.5f), PSNR %.2f dB, SSIM %.3f",
        results[metrics.key(model, "mse")],
        cfg.model.latent_size,
        results[metrics.key(metrics.PCA, "mse")],
        results[metrics.key(model, "psnr")],
        results[metrics.key(model, "ssim")],
    )
    if not cfg.input_corruption.is_identity:
        log.info(
            "%s: the corrupted input itself scores PSNR %.2f dB, SSIM %.3f (output %+.2f dB)",
            cfg.input_corruption.describe(),
            results[metrics.key(metrics.INPUT, "psnr")],
            results[metrics.key(metrics.INPUT, "ssim")],
            results[metrics.key(model, "psnr")] - results[metrics.key(metrics.INPUT, "psnr")],
        )
    for method in scores.baselines:
        prefix = metrics.classical_prefix(method)
        log.info(
            "%s (classical): PSNR %.2f dB, SSIM %.3f",
            method,
            results[metrics.key(prefix, "psnr")],
            results[metrics.key(prefix, "ssim")],
        )
