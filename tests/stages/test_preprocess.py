"""preprocess: the subset keys keep the first N images of the archive, in its order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lstm_ae.config import load_config
from lstm_ae.data.dataset import load_dataset
from lstm_ae.paths import PROCESSED, RAW_ARCHIVE
from lstm_ae.stages import preprocess
from tests.helpers.archives import BATCHES, make_archive, official_contents
from tests.helpers.projects import make_tiny_project


def test_max_images_keep_the_first_images_and_split_only_those(in_project: Path) -> None:
    contents = official_contents(per_batch=20)  # 100 training and 20 test images
    make_tiny_project(in_project, preprocess={"max_train_images": 30, "max_test_images": 7})
    RAW_ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
    make_archive(in_project / RAW_ARCHIVE, contents)
    data = preprocess.run(load_config(in_project / "params.yaml"), progress=False)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (24, 6, 7)
    in_order = [label for name in BATCHES[:5] for label in contents[name][b"labels"]]
    first_labels = in_order[:30]  # all of data_batch_1, then the first 10 of data_batch_2
    assert sorted(np.concatenate([data.y_train, data.y_val]).tolist()) == sorted(first_labels)
    assert data.y_test.tolist() == contents["test_batch"][b"labels"][:7]
    assert load_dataset(PROCESSED).x_test.shape == (7, 32, 96)


def test_without_limits_every_image_is_kept(in_project: Path) -> None:
    make_tiny_project(in_project)
    RAW_ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
    make_archive(in_project / RAW_ARCHIVE, official_contents(per_batch=4))
    data = preprocess.run(load_config(in_project / "params.yaml"), progress=False)
    assert len(data.x_train) + len(data.x_val) == 20 and len(data.x_test) == 4
