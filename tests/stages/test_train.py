"""The train stage under faults: a diverging loss, Ctrl-C and SIGTERM. Each must end the MLflow
run with a status that says so (never left RUNNING) and keep the previous model and reports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import pytest

from lstm_ae import cli
from lstm_ae.paths import HISTORY, LOSS_FIGURE, MODEL, RUN_INFO
from lstm_ae.stages import train as train_stage
from tests.helpers.projects import cli_env, make_tiny_project

TINY_MODEL = {"encoder_widths": [8], "decoder_widths": [8], "head": "dense"}
OUTPUTS = (MODEL, RUN_INFO, HISTORY, LOSS_FIGURE)


def previous_outputs(project: Path) -> dict[Path, bytes]:
    """Stand-ins for a previous good run's outputs, to compare byte for byte afterwards."""
    kept = {}
    for path in OUTPUTS:
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_bytes(f"previous {path.name}\n".encode())
        kept[path] = (project / path).read_bytes()
    return kept


def assert_unchanged(project: Path, kept: dict[Path, bytes]) -> None:
    for path, content in kept.items():
        assert (project / path).read_bytes() == content, f"{path} changed"
    for folder in {(project / path).parent for path in kept}:
        leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
        assert not leftovers, f"temporary files left in {folder}: {leftovers}"


def only_run(project: Path) -> mlflow.entities.Run:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10-lstm-autoencoder")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert len(runs) <= 1
    return runs[0] if runs else None


@pytest.mark.slow
def test_a_nan_loss_fails_the_run_and_keeps_the_previous_model(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(make_tiny_project(tmp_path, model=TINY_MODEL, train={"max_epochs": 3}))
    kept = previous_outputs(tmp_path)
    real_build = train_stage.build_model

    def poisoned(cfg, *args):  # the real model, with NaN from its output on: the loss is NaN at once
        model = real_build(cfg, *args)
        return keras.Model(model.input, keras.layers.Lambda(lambda x: x * float("nan"))(model.output))

    monkeypatch.setattr(train_stage, "build_model", poisoned)
    assert cli.main(["train", "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "Epoch" not in out  # --quiet silences Keras too
    lines = err.strip().splitlines()
    assert (
        lines[-1].startswith("error: ") and "nan" in lines[-1].lower() and "Traceback" not in "".join(lines)
    )
    run = only_run(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith("TrainingDiverged")
    assert_unchanged(tmp_path, kept)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_training_ends_the_run_killed_and_keeps_the_previous_outputs(
    signum: int, tmp_path: Path
) -> None:
    project = make_tiny_project(tmp_path, model=TINY_MODEL, train={"max_epochs": 1000, "patience": 1000})
    kept = previous_outputs(project)
    # The store exists before the child starts: this process's client does not take the lock
    # that serialises creating it, and the two creating it at once fail (store._store_lock).
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    # SIGINT's default restored: a test runner started in the background ignores it, and so
    # would the child, which then never sees KeyboardInterrupt.
    # PYTHONFAULTHANDLER: should the child hang, SIGABRT makes it print every thread's stack.
    process = subprocess.Popen(
        [sys.executable, "-m", "lstm_ae", "train"],
        cwd=project,
        env={**cli_env(), "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - the child must die of SIGINT as a shell job does
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:  # wait for a few epochs
            run = only_run(project)
            if run and len(client.get_metric_history(run.info.run_id, "val_loss")) >= 3:
                break
            time.sleep(0.3)
        if process.poll() is not None:
            pytest.fail(
                f"training ended (exit {process.returncode}) before the signal:\n{process.communicate()[1]}"
            )
        process.send_signal(signum)
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            stacks = process.communicate(timeout=30)[1]
            pytest.fail(f"still running 120 s after the signal; its stacks:\n{stacks}")
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, stderr
    assert f"interrupted ({signal.Signals(signum).name})" in stderr and "Traceback" not in stderr
    assert only_run(project).info.status == "KILLED"
    assert_unchanged(project, kept)


# --- bfloat16 on CPUs without bfloat16 instructions ----------------------------------------

EPYC_FLAGS = "flags\t\t: fpu vme avx2 avx512f avx512_vnni avx512_bf16 clzero\n"  # this project's CPU


@pytest.mark.parametrize(
    ("cpuinfo", "lacks"),
    [
        (EPYC_FLAGS, False),
        ("flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n", False),  # Intel Sapphire Rapids
        ("Features\t: fp asimd sve bf16 i8mm\n", False),  # Arm (Graviton 3)
        ("flags\t\t: fpu vme avx2 avx512f avx512_vnni\n", True),  # Cascade Lake: emulated
        ("flags\t\t: fpu avx2 avx512_bf16x\n", True),  # whole flags only
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(cpuinfo: str, lacks: bool) -> None:
    assert train_stage.lacks_native_bfloat16(cpuinfo) is lacks


@pytest.mark.parametrize(
    ("precision", "flags", "warns"),
    [
        ("mixed_bfloat16", "flags : fpu avx2 avx512f\n", True),
        ("mixed_bfloat16", EPYC_FLAGS, False),
        ("float32", "flags : fpu avx2 avx512f\n", False),
    ],
)
def test_mixed_bfloat16_on_a_cpu_without_it_warns_once_naming_the_key(
    tmp_path: Path, monkeypatch, caplog, precision: str, flags: str, warns: bool
) -> None:
    from lstm_ae.config import load_config

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(flags)
    monkeypatch.setattr(train_stage, "CPU_INFO", cpuinfo)
    cfg = load_config(Path(__file__).parents[2] / "params.yaml")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"precision": precision})})
    with caplog.at_level("WARNING", logger=train_stage.__name__):
        train_stage.warn_if_bfloat16_is_emulated(cfg)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == (1 if warns else 0)
    if warns:
        assert (
            "model.precision is mixed_bfloat16" in messages[0] and "model.precision: float32" in messages[0]
        )
