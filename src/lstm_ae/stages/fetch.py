"""fetch: download (or copy from a mirror) the CIFAR-10 archive and verify its md5."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from lstm_ae.config import Config
from lstm_ae.data.download import fetch
from lstm_ae.paths import RAW_ARCHIVE


def source(url: str) -> str:
    """fetch.url, with a relative path taken as a file in the project, such as a mirror in the
    git-ignored data/external/: a relative path keeps the committed dvc.lock free of one machine's
    folders. It names the workspace's file also when `dvc exp run --queue` runs this stage in a
    temporary copy, which holds git's files only (DVC_ROOT names the workspace there)."""
    if urlparse(url).scheme or Path(url).is_absolute():
        return url
    return str(Path(os.environ.get("DVC_ROOT") or ".") / url)


def run(cfg: Config, progress: bool = True) -> Path:
    """Put a verified archive at data/raw/; nothing appears there unless its md5 matches."""
    return fetch(
        source(cfg.fetch.url),
        cfg.fetch.md5,
        RAW_ARCHIVE,
        retries=cfg.fetch.retries,
        timeout_s=cfg.fetch.timeout_s,
        progress=progress,
    )
