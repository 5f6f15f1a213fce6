"""Quiet imports: TensorFlow's C++ banner is muted, Python errors are not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lstm_ae.startup import import_quietly


def test_output_to_fd_2_during_the_import_is_muted_and_stderr_works_after(tmp_path: Path) -> None:
    (tmp_path / "noisy.py").write_text("import os\nos.write(2, b'banner from C++\\n')\nVALUE = 7\n")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from lstm_ae.startup import import_quietly\n"
        "print(import_quietly('noisy').VALUE)\n"
        "import os; os.write(2, b'after\\n')\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert result.stdout == "7\n"
    assert result.stderr == "after\n"


def test_a_failing_import_still_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_module_for_test.py").write_text("raise ImportError('missing piece')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="missing piece"):
        import_quietly("broken_module_for_test")
