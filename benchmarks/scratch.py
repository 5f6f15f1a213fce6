"""Where do benchmark studies run without touching reports/tune? (helper; docs/results.md: Tuning studies)

Scratch space for benchmarks: a working folder for the studies of tune_pruning.py and
tune_workers.py, so they never overwrite the project's reports. It answers no question of its own;
the figures that depend on it are those two scripts' (docs/results.md: Tuning studies;
docs/reliability.md: Under load).

`lstm-ae tune` writes reports/tune (the study in docs/tuning.md, committed) relative to its working
folder. A benchmark study runs in a folder of its own that links the processed data set and
params.yaml, with DVC_ROOT set to the project root, as DVC does for a queued experiment: the
MLflow store and relative Optuna storage paths still resolve to the project, reports/tune does not.
"""

from __future__ import annotations

import os
from pathlib import Path

from lstm_ae.paths import PROCESSED


def scratch_project(folder: Path, params: Path = Path("params.yaml")) -> tuple[Path, dict[str, str]]:
    """Make ``folder`` a working folder for `lstm-ae tune`; return it and the environment to run in."""
    root = Path.cwd().resolve()
    (folder / PROCESSED.parent).mkdir(parents=True, exist_ok=True)
    for link, target in ((folder / PROCESSED, root / PROCESSED), (folder / "params.yaml", root / params)):
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return folder, {**os.environ, "DVC_ROOT": str(root)}
