"""A team's DVC remote, end to end over a real SSH server on loopback (docs/sharing.md).

One clone runs the pipeline on a tiny archive and pushes; a fresh clone of its repository, in
another folder, pulls and then, without training and without the MLflow store the model was
trained in: `dvc status` is clean, `dvc metrics show` and `dvc plots show` work, and
`lstm-ae reconstruct` and `mlflow models serve` use the pulled model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lstm_ae.hardware import tensorflow_requirement
from tests.helpers.archives import make_archive, official_contents
from tests.helpers.repos import commit, copy_project, md5, project_runs, set_params, sh, tool_env
from tests.helpers.servers import model_server, post_json
from tests.helpers.sshd import SSHD, SSHServer, ssh_server

pytestmark = pytest.mark.slow

# A project-relative mirror (git-ignored), so the lock the clone commits holds no path of this machine.
MIRROR = "data/external/cifar-10-python.tar.gz"
TINY = {
    "fetch.url": MIRROR,
    "eda.scatter_samples": 200,
    "model.family": "autoencoder",
    "model.encoder_widths": [16],
    "model.decoder_widths": [16],
    "train.max_epochs": 1,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    if SSHD is None:
        if os.environ.get("CI"):
            pytest.fail("sshd is not installed; .ci/run installs Debian's `openssh-server` package")
        pytest.skip("OpenSSH's sshd is not installed (apt-get install openssh-server)")
    with ssh_server(tmp_path_factory.mktemp("sshd")) as running:
        yield running


def use_remote(project: Path, server: SSHServer) -> None:
    """Each user's own settings, kept out of git in .dvc/config.local, as docs/sharing.md says."""
    for key, value in (("port", server.port), ("user", server.user), ("keyfile", server.keyfile)):
        sh(project, "dvc", "remote", "modify", "--local", "team", key, str(value))


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory, server: SSHServer) -> Path:
    """The first clone: adds the team's remote, runs the pipeline, commits and pushes."""
    project = copy_project(tmp_path_factory.mktemp("alice"))
    (project / MIRROR).parent.mkdir(parents=True)
    archive = make_archive(project / MIRROR, official_contents(per_batch=40))
    set_params(project, {**TINY, "fetch.md5": md5(archive)})
    remote = tmp_path_factory.mktemp("remote")
    sh(project, "dvc", "remote", "add", "--default", "team", f"ssh://{server.host}{remote}")
    use_remote(project, server)
    sh(project, "dvc", "repro")
    commit(project, "tiny run, the team's remote")
    pushed = sh(project, "dvc", "push")
    assert "pushed" in pushed.stdout, pushed.stdout
    assert any((remote / "files" / "md5").rglob("*")), "nothing reached the remote"
    return project


@pytest.fixture(scope="module")
def bob(tmp_path_factory: pytest.TempPathFactory, server: SSHServer, alice: Path) -> Path:
    """A fresh clone of alice's repository in another folder, after `dvc pull`."""
    project = tmp_path_factory.mktemp("bob") / "lstm-ae"
    sh(project.parent, "git", "clone", "-q", str(alice), str(project))
    assert not (project / "models/model.keras").exists()  # git holds only the hashes
    use_remote(project, server)
    sh(project, "dvc", "pull")
    return project


def test_the_pushed_lock_holds_no_path_of_the_machine_that_ran_it(alice: Path) -> None:
    lock = (alice / "dvc.lock").read_text()
    assert f"fetch.url: {MIRROR}" in lock and str(alice) not in lock and "/tmp/" not in lock


def test_a_pulled_clone_is_up_to_date_without_training(alice: Path, bob: Path) -> None:
    assert sh(bob, "dvc", "status", "dvc.yaml").stdout.strip() == "Data and pipelines are up to date."
    # The study stage, apart from the pipeline, is listed until a study's results are committed.
    status = json.loads(sh(bob, "dvc", "status", "--json").stdout)
    assert list(status) == ["tuning/dvc.yaml:tune"], status
    assert not (bob / "mlflow.db").exists()  # nothing trained or logged here
    for name in ("models/model.keras", "data/processed/cifar10.npz", "reports/train/loss.png"):
        assert (bob / name).read_bytes() == (alice / name).read_bytes(), name


def test_a_pulled_clone_shows_metrics_and_plots(alice: Path, bob: Path, tmp_path: Path) -> None:
    shown = json.loads(sh(bob, "dvc", "metrics", "show", "--json").stdout)
    metrics = json.loads((alice / "reports/metrics.json").read_text())
    assert repr(metrics["test_mse"]) in json.dumps(shown), shown
    sh(bob, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "val_loss" in html and "reconstructions.png" in html


def test_reconstruct_uses_the_pulled_model(bob: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    sh(bob, "lstm-ae", "reconstruct", str(image), "--out", str(tmp_path / "out"))  # models/model.keras
    assert (tmp_path / "out" / "errors.csv").read_text().splitlines()[1].startswith(f"1,{image},")


def test_mlflow_models_serve_serves_the_pulled_model(alice: Path, bob: Path, tmp_path: Path) -> None:
    served = bob / "models/served"
    assert tensorflow_requirement() in (served / "requirements.txt").read_text().split()
    images = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with model_server(str(served), bob, tool_env(), tmp_path / "server.log", ready_s=180) as base:
        status, answer = post_json(f"{base}/invocations", {"inputs": images.tolist()})
    assert status == 200, answer
    assert np.asarray(answer["predictions"]["reconstruction"]).shape == (2, 32, 32, 3)
    assert not (bob / "mlflow.db").exists()


def test_the_training_run_names_its_device(alice: Path) -> None:
    (run,) = project_runs(alice)
    assert run.data.tags["device"].startswith(("CPU: ", "GPU: "))
