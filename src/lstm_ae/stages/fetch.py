"""fetch: download (or copy from a mirror) the CIFAR-10 archive and verify its md5."""

from __future__ import annotations

from pathlib import Path

from lstm_ae.config import Config
from lstm_ae.data.download import fetch
from lstm_ae.paths import RAW_ARCHIVE


def run(cfg: Config, progress: bool = True) -> Path:
    """Put a verified archive at data/raw/; nothing appears there unless its md5 matches."""
    return fetch(
        cfg.fetch.url,
        cfg.fetch.md5,
        RAW_ARCHIVE,
        retries=cfg.fetch.retries,
        timeout_s=cfg.fetch.timeout_s,
        progress=progress,
    )
