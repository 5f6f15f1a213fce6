"""A saved model file loads for inference in a fresh process, the restorer's custom layers included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.tiny_models import save_restorer

LOAD = """
import sys
from pathlib import Path

from lstm_ae.model.saved import load_model

print(load_model(Path(sys.argv[1])).input_shape)
"""


@pytest.mark.slow  # a fresh interpreter imports TensorFlow: 10-20 s on a busy 2-core machine
def test_a_restorer_file_loads_with_nothing_else_imported(tmp_path: Path) -> None:
    """Safe mode finds custom layers only once their module is imported; a process that only
    loads a model (`lstm-ae reconstruct`, the served model) imports nothing but saved.py."""
    path = save_restorer(tmp_path / "model.keras")
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "(None, None, None)"
