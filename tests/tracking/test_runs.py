"""What every run carries (tags, params, system metrics, its data set) and how a failed run ends.

On a throwaway SQLite store in tmp_path (tests/tracking/conftest.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest

from lstm_ae.tracking import health, runs, store


def test_flatten_params_uses_dotted_keys_and_lists() -> None:
    params = {"seed": 42, "model": {"encoder_widths": (512, 256), "head": "lstm"}, "a": {"b": {"c": 1}}}
    assert runs.flatten_params(params) == {
        "seed": 42,
        "model.encoder_widths": [512, 256],
        "model.head": "lstm",
        "a.b.c": 1,
    }


def test_run_tags_carry_data_md5_and_dvc_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    tags = runs.run_tags("c58f30108f718f92721af3b95e74349a")
    assert tags["data_md5"] == "c58f30108f718f92721af3b95e74349a"
    assert "dvc_exp_name" not in tags
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-widths")
    assert runs.run_tags("ab" * 16)["dvc_exp_name"] == "tiny-widths"
    assert runs.run_name() == "tiny-widths"


def test_resume_or_start_reopens_a_known_run_and_replaces_an_unknown_one() -> None:
    store.use_project_store("unit-test")
    with mlflow.start_run() as first:
        pass
    with runs.resume_or_start(first.info.run_id) as resumed:
        assert resumed.info.run_id == first.info.run_id
    with runs.resume_or_start("0" * 32, run_name="fresh") as fresh:
        assert fresh.info.run_id != first.info.run_id
        assert fresh.info.run_name == "fresh"
    assert mlflow.get_run(fresh.info.run_id).info.status == "FINISHED"


def test_a_run_that_fails_while_its_server_is_down_fails_with_its_own_error_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, ending it called the dead server: MLflow's retries, then its traceback chained to
    the real error."""
    store.use_project_store("unit-test")
    monkeypatch.setattr(health, "server_trouble", lambda uri, timeout_s=5: "connection refused")
    with (
        pytest.raises(ValueError, match="the real error") as raised,
        mlflow.start_run() as run,
        runs.ended_as_it_failed(),
    ):
        raise ValueError("the real error")
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    assert mlflow.active_run() is None
    assert mlflow.MlflowClient().get_run(run.info.run_id).info.status == "RUNNING"


def test_a_training_run_samples_system_metrics_until_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # MLflow's default: 10 s
    store.use_project_store("unit-test")
    with runs.start_training_run("sampled", {"task": "reconstruct"}) as run:
        time.sleep(1.5)
    logged = mlflow.get_run(run.info.run_id)
    assert logged.info.run_name == "sampled" and logged.data.tags["task"] == "reconstruct"
    system = [key for key in logged.data.metrics if key.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system and "system/system_memory_usage_megabytes" in system
    samples = mlflow.MlflowClient().get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert len(samples) >= 2
    time.sleep(0.5)  # the sampler stopped with the run: no sample after its end
    assert len(
        mlflow.MlflowClient().get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    ) == len(samples)


def test_the_training_data_is_the_runs_input_named_by_file_and_archive_md5() -> None:
    store.use_project_store("unit-test")
    x_train = np.zeros((5, 32, 96), dtype=np.float32)
    with mlflow.start_run() as run:
        runs.log_training_data(Path("data/processed/cifar10.npz"), "c5" * 16, x_train)
    (logged,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == ("cifar10", "c5" * 16)
    assert json.loads(logged.dataset.source) == {"uri": "data/processed/cifar10.npz"}
    assert [(tag.key, tag.value) for tag in logged.tags] == [("mlflow.data.context", "training")]
    (spec,) = json.loads(logged.dataset.schema)["mlflow_colspec"]
    assert spec["tensor-spec"] == {"dtype": "float32", "shape": [-1, 32, 96]}
