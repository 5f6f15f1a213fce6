"""The job a spawned tuning process is given: it travels without TensorFlow and cannot be changed."""

from __future__ import annotations

import dataclasses
import math
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_ae.config import load_config
from lstm_ae.tuning.spawn import WorkerJob

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


UNPICKLE_JOB_SCRIPT = """
import pickle, sys
job = pickle.loads(sys.stdin.buffer.read())
print(type(job).__name__, job.n_trials, job.worker, job.cfg.tune.study_name, "tensorflow" in sys.modules)
"""


def test_a_worker_job_reaches_a_new_process_without_importing_tensorflow() -> None:
    """A spawned tuning process unpickles its job before tune_worker mutes TensorFlow's import:
    the job must bring in nothing heavier than the config."""
    cfg = load_config(PARAMS)
    job = WorkerJob(cfg, "parent", "0", n_trials=3, worker=1, log_level=20, deadline=math.inf)
    result = subprocess.run(
        [sys.executable, "-c", UNPICKLE_JOB_SCRIPT],
        input=pickle.dumps(job),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["WorkerJob", "3", "1", cfg.tune.study_name, "False"]


def test_each_worker_job_is_made_from_a_template_that_stays_as_it_was() -> None:
    template = WorkerJob(load_config(PARAMS), "parent", "0", n_trials=10, worker=0)
    job = dataclasses.replace(template, n_trials=2, worker=3)
    assert (template.n_trials, template.worker, job.n_trials, job.worker) == (10, 0, 2, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.n_trials = 5  # type: ignore[misc]
