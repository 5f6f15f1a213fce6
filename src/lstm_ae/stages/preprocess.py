"""preprocess: read the archive safely, reshape images to row sequences, split train/validation."""

from __future__ import annotations

import logging

from lstm_ae.config import Config
from lstm_ae.data.cifar import read_archive
from lstm_ae.data.dataset import Dataset, save_dataset
from lstm_ae.data.download import file_md5
from lstm_ae.data.sequences import split_train_val, to_sequences
from lstm_ae.paths import PROCESSED, RAW_ARCHIVE, require

log = logging.getLogger(__name__)


def run(cfg: Config, progress: bool = True) -> Dataset:
    """Write data/processed/cifar10.npz: uint8 sequences, labels, class names, the archive's md5."""
    cifar = read_archive(require(RAW_ARCHIVE, made_by="fetch"), progress=progress)
    # A subset is the first N images (null keeps all): the archive's order, the same on every run.
    train, test = slice(cfg.preprocess.max_train_images), slice(cfg.preprocess.max_test_images)
    x_train, x_val, y_train, y_val = split_train_val(
        to_sequences(cifar.x_train[train]), cifar.y_train[train], cfg.preprocess.val_fraction, cfg.seed
    )
    data = Dataset(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=to_sequences(cifar.x_test[test]),
        y_test=cifar.y_test[test],
        class_names=cifar.class_names,
        archive_md5=file_md5(RAW_ARCHIVE),
    )
    save_dataset(data, PROCESSED)
    log.info(
        "train %d, validation %d, test %d sequences -> %s",
        len(x_train),
        len(x_val),
        len(data.x_test),
        PROCESSED,
    )
    return data
