"""The fetch stage's source: a relative fetch.url is a file in the project, also for queued runs."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from lstm_ae import cli
from lstm_ae.paths import RAW_ARCHIVE
from lstm_ae.stages.fetch import source
from tests.helpers.archives import make_archive
from tests.helpers.projects import make_tiny_project

MIRROR = "data/external/cifar-10-python.tar.gz"


@pytest.mark.parametrize(
    "url",
    [
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "file:///srv/cifar.tar.gz",
        "/srv/cifar.tar.gz",
    ],
)
def test_urls_and_absolute_paths_are_taken_as_they_are(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_ROOT", "/elsewhere")
    assert source(url) == url


def test_a_relative_path_is_in_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert source(MIRROR) == MIRROR
    monkeypatch.setenv("DVC_ROOT", "/work/project")
    assert source(MIRROR) == f"/work/project/{MIRROR}"


def test_a_queued_run_fetches_the_workspaces_git_ignored_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_signal_handling: None
) -> None:
    """`dvc exp run --queue` runs in a copy holding git's files only: no data/external/ there."""
    workspace = tmp_path / "workspace"
    (workspace / MIRROR).parent.mkdir(parents=True)
    archive = make_archive(workspace / MIRROR)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    make_tiny_project(workspace, fetch={"url": MIRROR, "md5": digest})
    copy = tmp_path / "queued-copy"
    copy.mkdir()
    shutil.copy(workspace / "params.yaml", copy / "params.yaml")
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(workspace))
    assert cli.main(["fetch", "--quiet"]) == 0
    assert (copy / RAW_ARCHIVE).read_bytes() == archive.read_bytes()
