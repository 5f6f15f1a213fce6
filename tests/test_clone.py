"""What a fresh clone is told: no path of one machine in the committed settings and lock, and every
output that git carries (`cache: false`) is in the repository, so `dvc status` does not call it
deleted. The end-to-end check with a DVC remote is tests/test_remote.py."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# An absolute or home path, or a file:// URL, alone or after `=` or a space (as in a command).
MACHINE_PATH = re.compile(r"(?:^|[\s=])(?:/|~/|file:)")


def strings(value: object) -> Iterator[str]:
    """Every string in a YAML document, keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("/tmp/cifar10/cifar-10-python.tar.gz", True),  # what dvc.lock's fetch.url once held
        ("file:///data/cifar.tar.gz", True),
        ("~/cifar.tar.gz", True),
        ("PYTHONPATH=/work/main/src python -m lstm_ae fetch", True),
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", False),
        ("data/external/cifar-10-python.tar.gz", False),
        ("PYTHONPATH=src python -m lstm_ae fetch", False),
    ],
)
def test_machine_paths_are_recognised(text: str, flagged: bool) -> None:
    assert bool(MACHINE_PATH.search(text)) == flagged


@pytest.mark.parametrize(
    "name", ["params.yaml", "conf/config.yaml", "dvc.yaml", "dvc.lock", "tuning/dvc.yaml", "conf/preset"]
)
def test_no_path_of_one_machine_is_committed(name: str) -> None:
    """A mirror goes in as a project path (data/external/, git-ignored), so a teammate's clone does
    not see the author's folders, nor `dvc status` a change for them (docs/offline-data.md)."""
    files = sorted((REPO / name).glob("*.yaml")) if name == "conf/preset" else [REPO / name]
    for path in files:
        found = [
            s for s in strings(yaml.safe_load(path.read_text(encoding="utf-8"))) if MACHINE_PATH.search(s)
        ]
        assert not found, f"{path.relative_to(REPO)} names paths of one machine: {found}"


def git_carried_outputs() -> Iterator[str]:
    """The outputs of the pipeline that git, not the DVC cache, carries to a clone."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for spec in stages.values():
        for entry in spec.get("outs", []) + spec.get("metrics", []):
            if isinstance(entry, dict):
                ((path, options),) = entry.items()
                if options and options.get("cache") is False:
                    yield path


@pytest.mark.parametrize("path", list(git_carried_outputs()))
def test_every_output_git_carries_is_in_the_repository(path: str) -> None:
    """models/mlflow_run.json was once left out: a clone's `dvc status` then listed evaluate's
    dependency as deleted, and train as changed."""
    assert (REPO / path).exists(), f"{path}: a `cache: false` output missing from the checkout"
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False).returncode == 0
    assert not ignored, f"{path}: a `cache: false` output that git ignores, so no clone gets it"


def declared(stage: dict, kind: str) -> set[str]:
    """The paths a dvc.yaml stage lists under ``kind`` (deps, outs or metrics), options aside."""
    return {next(iter(entry)) if isinstance(entry, dict) else entry for entry in stage.get(kind, [])}


def test_the_committed_lock_was_written_by_a_run_of_this_pipeline() -> None:
    """Every stage's deps and outs of dvc.yaml are in dvc.lock, each out with its hash: a lock patched
    by hand, or left from an older dvc.yaml, makes `dvc exp run` warn `No file hash info found`
    and a clone's `dvc status` report stages as changed that nobody touched."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    locked = yaml.safe_load((REPO / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    assert locked.keys() == stages.keys()
    for name, stage in stages.items():
        lock = locked[name]
        assert lock["cmd"] == stage["cmd"], name
        assert {d["path"] for d in lock.get("deps", [])} == declared(stage, "deps"), name
        outs = {o["path"]: o for o in lock.get("outs", [])}
        assert outs.keys() == declared(stage, "outs") | declared(stage, "metrics"), name
        for path, out in outs.items():
            assert out.get("md5") and out.get("size"), f"{name}: {path} has no hash in dvc.lock"
        assert set(lock["params"]["params.yaml"]) == set(stage["params"]), name
