"""train: fit the model (model.family) from params, save it, and open the pipeline's MLflow run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import mlflow

from lstm_ae import figures
from lstm_ae.atomic import atomic_path, write_text
from lstm_ae.config import Config
from lstm_ae.data.dataset import load_dataset
from lstm_ae.model.build import build_model
from lstm_ae.model.fit import fit
from lstm_ae.paths import HISTORY, LOSS_FIGURE, MODEL, PROCESSED, RUN_INFO, SERVED_MODEL
from lstm_ae.tracking import curves, registry, runs, store, ui, unsent

log = logging.getLogger(__name__)

CPU_INFO = Path("/proc/cpuinfo")
# CPU flags (x86 and Arm, as Linux names them) for native bfloat16 arithmetic.
NATIVE_BFLOAT16 = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def lacks_native_bfloat16(cpuinfo: str) -> bool:
    """True if /proc/cpuinfo's text names no bfloat16 flag: TensorFlow then emulates bfloat16 on
    this CPU, and model.precision mixed_bfloat16 was only measured to pay off with the flag."""
    return NATIVE_BFLOAT16.isdisjoint(cpuinfo.split())


def warn_if_bfloat16_is_emulated(cfg: Config) -> None:
    """One warning before a long fit, when mixed_bfloat16 runs on a CPU (no GPU) without the flag.
    Silent where /proc/cpuinfo does not exist (not Linux): nothing to judge by."""
    if cfg.model.precision != "mixed_bfloat16" or not CPU_INFO.exists():
        return
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU") and lacks_native_bfloat16(CPU_INFO.read_text()):
        log.warning(
            "model.precision is mixed_bfloat16, but this CPU has no bfloat16 instructions (AVX512_BF16, "
            "AMX or Arm BF16), so TensorFlow emulates them: "
            "float32 may be faster here (model.precision: float32)"
        )


def history_csv(history: dict[str, list[float]]) -> str:
    """One row per epoch (1-based) with train and validation loss, the file `dvc plots` draws."""
    rows = ["epoch,loss,val_loss"]
    rows += [
        f"{i + 1},{loss:.8g},{val:.8g}"
        for i, (loss, val) in enumerate(zip(history["loss"], history["val_loss"]))
    ]
    return "\n".join(rows) + "\n"


def run(cfg: Config) -> dict[str, list[float]]:
    """Train on the train split for cfg.task, early-stop on validation, and log everything to one
    MLflow run.

    The run stays open for the evaluate stage: its id goes to models/mlflow_run.json. A tracking
    server that does not answer by the end of training costs no output: what the run had left to
    log is kept in models/unsent-runs/ (unsent.send_or_keep) and the stage ends with one warning.
    """
    keras.utils.set_random_seed(cfg.seed)
    warn_if_bfloat16_is_emulated(cfg)
    data = load_dataset(PROCESSED).scaled()
    model = build_model(cfg.model, data.x_train, cfg.seed)  # the sweep autoencoder starts at their PCA
    experiment_id = store.use_project_store()
    logger = curves.EpochLogger(keep_after_outage=True)
    tags = {
        **runs.run_tags(data.archive_md5),
        **runs.task_tags(cfg.input_corruption, cfg.model.family),
    }
    with runs.start_training_run(runs.run_name(), tags) as active, runs.ended_as_it_failed():
        runs.log_training_data(PROCESSED, data.archive_md5, data.x_train)
        runs.log_new_params(runs.flatten_params(cfg.model_dump(mode="json")))
        mlflow.log_params(
            {"n_train": len(data.x_train), "n_val": len(data.x_val), "param_count": model.count_params()}
        )
        history = fit(
            model,
            data.x_train,
            data.x_val,
            cfg.train,
            callbacks=[logger],
            corruption=cfg.input_corruption,
            seed=cfg.seed,
        )
        kept = save_outputs(cfg, model, history, active.info.run_id, logger)
    best = best_epoch(history)
    log.info(
        "best epoch %d of %d, val_loss %.5f -> %s",
        best + 1,
        len(history["val_loss"]),
        history["val_loss"][best],
        MODEL,
    )
    if kept is None:
        log.info("%s", ui.runs_link(experiment_id))
    else:
        log.warning("%s", unsent.kept_note(kept))
    return history


def best_epoch(history: dict[str, list[float]]) -> int:
    """The 0-based epoch of the lowest validation loss, the weights early stopping kept."""
    return min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)


def save_outputs(
    cfg: Config,
    model: keras.Model,
    history: dict[str, list[float]],
    run_id: str,
    logger: curves.EpochLogger,
) -> Path | None:
    """Write the loss figure, the history, the model, its served copy and the run's id, and send
    the run what it has not had yet; the folder where it was kept if the server did not take it.

    The model file is written last among the heavy outputs, so a failure above keeps the old one;
    the logged (or kept) model is that same file, logged before it replaces the old one.
    """
    with atomic_path(LOSS_FIGURE) as tmp:
        figures.loss_curves(history).savefig(tmp, dpi=100)
    write_text(HISTORY, history_csv(history))
    best = best_epoch(history)
    summary = {"best_epoch": best + 1, "best_val_loss": history["val_loss"][best]}
    with atomic_path(MODEL) as tmp:
        model.save(tmp)
        metrics = logger.unsent + unsent.metric_points(summary)
        kept = unsent.send_or_keep(
            unsent.Unsent(run_id, metrics, {LOSS_FIGURE: "train"}, tmp), logger.trouble
        )
    registry.save_reconstruction_model(MODEL, SERVED_MODEL)
    # What the model is bound to goes beside the run id: evaluate refuses other settings.
    write_text(
        RUN_INFO, json.dumps({"run_id": run_id, "model_identity": cfg.model_identity()}, indent=2) + "\n"
    )
    return kept
