"""The report's architecture through the real `dvc exp run` on 2,000/500 real CIFAR-10 images built
from the mirror in ../shared/cifar10/ (required under CI, skipped elsewhere without it). Slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.repos import REPO, copy_project, md5, project_runs, sh

pytestmark = pytest.mark.slow

MIRROR_TOOL = REPO.parent / "shared" / "cifar10" / "build_tarball.py"


def test_pipeline_on_a_real_cifar10_subset_from_the_mirror(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The report's architecture on 2,000/500 real images, through the mirror option users have."""
    if not MIRROR_TOOL.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{MIRROR_TOOL} is missing; CI must run the pipeline on the CIFAR-10 mirror")
        pytest.skip(f"no CIFAR-10 mirror at {MIRROR_TOOL}")
    archive = tmp_path_factory.mktemp("mirror") / "cifar-10-subset.tar.gz"
    subprocess.run(
        [sys.executable, str(MIRROR_TOOL), str(archive), "--limit-train", "2000", "--limit-test", "500"],
        check=True,
        capture_output=True,
    )
    project = copy_project(tmp_path_factory.mktemp("mirror-project"))
    # The report's architecture, set the way the README's "report's recipe" command sets it.
    sh(
        project,
        "dvc",
        "exp",
        "run",
        "-S",
        f"fetch.url={archive.as_uri()}",
        "-S",
        f"fetch.md5={md5(archive)}",
        "-S",
        "model.family=autoencoder",
        "-S",
        "model.encoder_widths=[512,256]",
        "-S",
        "model.decoder_widths=[256]",
        "-S",
        "model.head=lstm",
        "-S",
        "model.bidirectional=false",
        "-S",
        "model.row_index=false",
        "-S",
        "train.max_epochs=3",
    )
    metrics = json.loads((project / "reports/metrics.json").read_text())
    eda = json.loads((project / "reports/eda/metrics.json").read_text())
    assert abs(eda["brightness_mean"] - 0.47) < 0.02 and abs(eda["brightness_var"] - 0.063) < 0.01
    # Three short epochs on 1,600 images must already beat predicting the mean image.
    assert metrics["test_mse"] < metrics["mean_image_test_mse"]
    (run,) = project_runs(project)
    assert (
        run.data.params["model.encoder_widths"] == "[512, 256]"
        and run.data.params["param_count"] == "2695552"
    )
