"""`dvc exp run -S preset=NAME` for every preset: what `dvc exp show` lists, what MLflow logged and
what the stage loaded agree, and a -S on top of a preset wins. The real commands in a copy of this
repository, on a tiny archive, so marked slow.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml

from lstm_ae.config import Config, load_config
from lstm_ae.tracking.runs import flatten_params
from tests.helpers.repos import REPO, project_runs, sh, tiny_project

pytestmark = pytest.mark.slow

PRESETS = sorted(p.stem for p in (REPO / "conf" / "preset").glob("*.yaml"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy set to a tiny archive and model; the first experiment runs fetch to eda,
    the others find them in DVC's cache."""
    return tiny_project(tmp_path_factory.mktemp("project"), tmp_path_factory.mktemp("archive"))


def tracking_params(cfg: Config) -> dict[str, object]:
    """The settings as MLflow records them (dotted keys, lists for tuples), as plain values."""
    return flatten_params(cfg.model_dump(mode="json"))


def is_param(column: str) -> bool:
    """A column of `dvc exp show` that holds a key of params.yaml a stage lists (a section listed
    whole, such as model.restorer, shows as one column per key)."""
    return any(column == key or column.startswith(f"{key}.") for key in PARAM_KEYS)


def shown_params(project: Path, experiment: str) -> dict[str, object]:
    """The params.yaml columns of one experiment's row in `dvc exp show --csv`, read as YAML values
    (the CSV leaves a null empty)."""
    table = list(csv.DictReader(io.StringIO(sh(project, "dvc", "exp", "show", "--csv").stdout)))
    (row,) = [r for r in table if r["Experiment"] == experiment]
    return {
        key: None if value == "" else yaml.safe_load(value) for key, value in row.items() if is_param(key)
    }


def logged_value(text: str) -> object:
    """An MLflow param read back as a value: MLflow stores str(value), so null is 'None'."""
    return None if text == "None" else yaml.safe_load(text)


# The keys the pipeline's stages list in dvc.yaml: what `dvc exp show` has columns for.
PARAM_KEYS = {
    key
    for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values()
    for key in stage["params"]
}


# Each preset as `dvc exp run -S preset=NAME` runs it, and one with the user's -S on top. The
# report's 200 epochs at patience 10 run to the end on the tiny data (7.5 minutes): 2 on top.
PRESET_RUNS = [
    [f"preset={name}", "train.max_epochs=2"] if name == "report" else [f"preset={name}"] for name in PRESETS
] + [["preset=smoke", "train.max_epochs=3"]]


@pytest.mark.parametrize("overrides", PRESET_RUNS, ids=["+".join(o) for o in PRESET_RUNS])
def test_dvc_exp_show_lists_what_each_preset_experiment_ran(project: Path, overrides: list[str]) -> None:
    """What `dvc exp show` lists == the run's MLflow params == the settings the stage loaded, for each
    preset, and a -S given on top of a preset wins over it. Up to train: evaluate reads no model setting.
    The model is shrunk for time in the fixture's conf/config.yaml only where a preset names no value,
    so every value a preset sets is the preset's own."""
    name = "exp-" + "-".join(o.replace("=", "").replace(".", "").replace("_", "") for o in overrides)
    args = [arg for override in overrides for arg in ("-S", override)]
    sh(project, "dvc", "exp", "run", "train", "--name", name, *args)
    loaded = tracking_params(load_config(project / "params.yaml"))
    (run,) = [r for r in project_runs(project) if r.data.tags.get("dvc_exp_name") == name]
    shown = shown_params(project, name)
    assert shown.keys() == {key for key in loaded if is_param(key)}
    for key, value in shown.items():
        assert value == loaded[key], f"{key}: dvc exp show says {value!r}, the stage loaded {loaded[key]!r}"
        assert logged_value(run.data.params[key]) == loaded[key], (
            f"{key}: MLflow has {run.data.params[key]!r}"
        )
    for override in overrides[1:]:  # the user's -S on top of the preset
        key, value = override.split("=")
        assert loaded[key] == yaml.safe_load(value)
