"""evaluate: score the model on the test set next to PCA at the same code size (and, for deblur and
denoise, the corrupted input and classical restorations), in the training run."""

from __future__ import annotations

import json
import logging

import mlflow
import numpy as np

from lstm_ae import classical, figures, metrics, tracking
from lstm_ae.atomic import atomic_dir, write_text
from lstm_ae.baselines import pca_reconstruct
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

log = logging.getLogger(__name__)


def headline(summary: dict[str, float], prefix: str) -> dict[str, float]:
    """MSE, PSNR and SSIM only; per-class numbers go to their own file and plot."""
    return {key: summary[key] for key in (f"{prefix}_mse", f"{prefix}_psnr", f"{prefix}_ssim")}


def per_class_csv(model_summary: dict[str, float], pca_summary: dict[str, float], class_names) -> str:
    rows = ["class,model_mse,pca_mse"]
    present = [
        c for c in class_names if f"test_mse_{c}" in model_summary
    ]  # a small test set may lack a class
    rows += [
        f"{c},{model_summary[f'test_mse_{c}']:.8g},{pca_summary[f'pca_test_mse_{c}']:.8g}" for c in present
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
        version, crowned = tracking.register_model(run_id, test_mse, name)
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
        f" as @{tracking.CHAMPION}"
        if crowned
        else f"; @{tracking.CHAMPION} stays (test MSE {test_mse:.5f} does not beat it)",
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
    ours = tracking.flatten_params(cfg.model_identity())
    theirs = tracking.flatten_params(recorded)
    differ = [key for key in ours if key in theirs and theirs[key] != ours[key]]
    if differ:
        trained = ", ".join(f"{key}={theirs[key]}" for key in differ)
        given = ", ".join(f"{key}={ours[key]}" for key in differ)
        raise ModelMismatchError(
            f"{MODEL} was trained with {trained} ({RUN_INFO}), but these settings say {given}; "
            "evaluate it with the settings it was trained with (the same --preset and -S), or train again"
        )


def run(cfg: Config) -> dict[str, float]:
    """Score the model's output for the task against the clean test images, next to the corrupted
    input itself (the floor a restoration must beat) and PCA at the same code size; write
    reports/metrics.json and the figures, and log both into the training run."""
    trained = json.loads(RUN_INFO.read_text()) if RUN_INFO.exists() else {}
    require_same_model(trained.get("model_identity"), cfg)
    data = load_dataset(PROCESSED).scaled()
    model = load_model()
    corruption = cfg.input_corruption
    inputs = corruption.fixed(data.x_test, cfg.seed, "test")  # the same inputs on every run
    recon = model.predict(inputs, batch_size=512, verbose=keras_verbosity())
    clean, input_images, recon_images = to_images(data.x_test), to_images(inputs), to_images(recon)
    # PCA is fitted on clean training images and projects the same (corrupted) test inputs.
    pca_images = to_images(pca_reconstruct(data.x_train, inputs, cfg.model.latent_size, seed=cfg.seed))

    model_summary = metrics.summarize(clean, recon_images, data.y_test, data.class_names, prefix="test")
    pca_summary = metrics.summarize(clean, pca_images, data.y_test, data.class_names, prefix="pca_test")
    mean_image = data.x_train.mean(axis=0)
    results = {
        **headline(model_summary, "test"),
        **headline(pca_summary, "pca_test"),
        "mean_image_test_mse": float(np.mean((data.x_test - mean_image) ** 2)),
    }
    if not corruption.is_identity:
        input_summary = metrics.summarize(
            clean, input_images, data.y_test, data.class_names, prefix="input_test"
        )
        results.update(headline(input_summary, "input_test"))
    baselines: dict[str, np.ndarray] = {}
    if not corruption.is_identity and cfg.evaluate.classical:
        strengths, baselines = classical_baselines(cfg, data, corruption, input_images)
        results.update(strengths)
        for method, images in baselines.items():
            summary = metrics.summarize(clean, images, data.y_test, data.class_names, prefix=f"{method}_test")
            results.update(headline(summary, f"{method}_test"))

    picks = example_indices(data.y_test, cfg.evaluate.examples)
    errors = metrics.mse_per_image(clean, recon_images)
    titles = [data.class_names[data.y_test[i]] for i in picks]
    drawn = {
        "reconstructions": examples_figure(
            clean, input_images, recon_images, picks, titles, not corruption.is_identity, baselines
        ),
        "best_worst": figures.best_worst(clean, recon_images, errors, k=cfg.evaluate.best_worst),
    }
    with atomic_dir(EVAL_FIGURES) as folder:
        for name, figure in drawn.items():
            figure.savefig(folder / f"{name}.png", dpi=100)
    write_text(PER_CLASS, per_class_csv(model_summary, pca_summary, data.class_names))
    write_text(METRICS, json.dumps(results, indent=2) + "\n")

    tracking.use_project_store()
    run_id = trained.get("run_id")
    with (
        tracking.resume_or_start(run_id, tags=tracking.run_tags(data.archive_md5)),
        tracking.ended_as_it_failed(),
    ):
        mlflow.log_metrics({**model_summary, **pca_summary, **results})
        tracking.log_figures(drawn, "evaluate")
        if EDA_METRICS.exists():
            mlflow.log_metrics(json.loads(EDA_METRICS.read_text()))
        for path in sorted(EDA_FIGURES.glob("*.png")):
            mlflow.log_artifact(str(path), "eda")
        mlflow.set_tags(tracking.task_tags(corruption, cfg.model.family))
        name = tracking.registered_name(corruption, cfg.model.family) + subset_suffix(cfg)
        register(mlflow.active_run().info.run_id, results["test_mse"], name)
        experiment_id = mlflow.active_run().info.experiment_id
    log.info(
        "test MSE %.5f (PCA-%d %.5f), PSNR %.2f dB, SSIM %.3f",
        results["test_mse"],
        cfg.model.latent_size,
        results["pca_test_mse"],
        results["test_psnr"],
        results["test_ssim"],
    )
    if not corruption.is_identity:
        log.info(
            "%s: the corrupted input itself scores PSNR %.2f dB, SSIM %.3f (output %+.2f dB)",
            corruption.describe(),
            results["input_test_psnr"],
            results["input_test_ssim"],
            results["test_psnr"] - results["input_test_psnr"],
        )
    for method in baselines:
        log.info(
            "%s (classical): PSNR %.2f dB, SSIM %.3f",
            method,
            results[f"{method}_test_psnr"],
            results[f"{method}_test_ssim"],
        )
    log.info("%s", tracking.runs_link(experiment_id))
    return results
