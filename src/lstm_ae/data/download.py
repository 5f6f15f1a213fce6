"""Fetch an archive from a URL or local path, resuming cut downloads and verifying its md5."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import requests
import urllib3
from tqdm import tqdm

from lstm_ae.atomic import atomic_path
from lstm_ae.errors import UserError

logger = logging.getLogger(__name__)

_MD5_PATTERN = re.compile(r"[0-9a-f]{32}")
_CHUNK = 1 << 16
# Network failures worth another attempt; anything else is a problem retrying cannot fix.
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ReadTimeoutError,  # from reading the body: a stalled server
    urllib3.exceptions.ProtocolError,  # from reading the body: a dropped connection
)


class FetchError(UserError, RuntimeError):
    """One-line, user-facing message saying what failed and what to do."""


class _RetryableStatus(Exception):
    """An HTTP answer (5xx, 429, short body) that a later attempt may not repeat."""


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks so a large archive never sits in memory."""
    digest = hashlib.md5()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    source: str,
    md5: str,
    dest: Path,
    *,
    retries: int = 5,
    timeout_s: float = 60.0,
    backoff_s: float = 1.0,
    progress: bool = True,
) -> Path:
    """Put the file at ``source`` at ``dest``; ``dest`` only ever holds a file whose md5 matches."""
    expected = md5.strip().lower()
    if not _MD5_PATTERN.fullmatch(expected):
        raise FetchError(f"md5 {md5!r} is not 32 hex digits; set fetch.md5 in params.yaml to the file's md5")
    dest = Path(dest)
    if dest.is_file():
        if file_md5(dest) == expected:
            logger.info("%s is present with the expected md5; not fetching it again", dest)
            return dest
        logger.warning("%s is present but its md5 differs; fetching it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        partial = dest.with_name(dest.name + ".partial")
        _download_http(
            source, partial, retries=retries, timeout_s=timeout_s, backoff_s=backoff_s, progress=progress
        )
        _verify(partial, expected, source)
        os.replace(partial, dest)
    else:
        local = Path(url2pathname(urlparse(source).path)) if scheme == "file" else Path(source)
        # The copy goes to a temporary name that atomic_path removes unless the md5 check passes.
        with atomic_path(dest) as tmp:
            _copy_local(local, tmp, progress=progress)
            _verify(tmp, expected, source)
    logger.info("fetched %s to %s", source, dest)
    return dest


def _verify(path: Path, expected: str, source: str) -> None:
    """Delete ``path`` and raise unless its md5 is ``expected``."""
    got = file_md5(path)
    if got != expected:
        path.unlink(missing_ok=True)
        raise FetchError(
            f"{source}: md5 is {got}, expected {expected}; the download is corrupt or fetch.md5 in "
            "params.yaml is wrong. The bad file was removed."
        )


def _copy_local(source: Path, target: Path, *, progress: bool) -> None:
    """Copy a local file with a progress bar."""
    if not source.is_file():
        raise FetchError(f"{source}: no such file; set fetch.url in params.yaml to an existing path or URL")
    with (
        source.open("rb") as src,
        target.open("wb") as dst,
        tqdm(
            total=source.stat().st_size, unit="B", unit_scale=True, disable=not progress, desc=source.name
        ) as bar,
    ):
        while block := src.read(_CHUNK):
            dst.write(block)
            bar.update(len(block))


def _download_http(
    url: str, partial: Path, *, retries: int, timeout_s: float, backoff_s: float, progress: bool
) -> None:
    """Download ``url`` into ``partial``, retrying transient failures and resuming each time."""
    for attempt in range(retries + 1):
        try:
            _http_attempt(url, partial, timeout_s=timeout_s, progress=progress)
            return
        except (*_TRANSIENT, _RetryableStatus) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if attempt == retries:
                raise FetchError(
                    f"{url}: download failed after {retries + 1} attempts ({reason}); check the network "
                    "and run the fetch stage again (it resumes), or set fetch.url to a local copy"
                ) from exc
            delay = backoff_s * 2**attempt
            logger.warning("%s: %s; retrying in %.1f s (%d of %d)", url, reason, delay, attempt + 1, retries)
            time.sleep(delay)


def _http_attempt(url: str, partial: Path, *, timeout_s: float, progress: bool) -> None:
    """One request: resume from the bytes already in ``partial`` when there are any."""
    offset = partial.stat().st_size if partial.is_file() else 0
    # Identity encoding keeps byte counts and Range offsets in the same units as the file.
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
    with requests.get(url, headers=headers, stream=True, timeout=timeout_s) as response:
        status = response.status_code
        if status == 416 and offset:
            _handle_416(response, partial, offset)
            return
        if status == 429 or status >= 500:
            raise _RetryableStatus(f"HTTP {status}")
        if status >= 400:
            raise FetchError(f"{url}: server answered HTTP {status}; check fetch.url in params.yaml")
        if status != 206:
            offset = 0  # The server ignored the Range header and sends the whole file: start over.
        length = response.headers.get("Content-Length")
        total = int(length) + offset if length is not None else None
        written = offset
        # urllib3 would raise on a short body and drop the bytes it had buffered; end the stream
        # instead, keep every byte received, and let the length check below ask for a retry.
        response.raw.enforce_content_length = False
        with (
            partial.open("ab" if offset else "wb") as fh,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                disable=not progress,
                desc=partial.name,
            ) as bar,
        ):
            # read1 returns what has arrived; a full-size read would wait for a whole chunk, and
            # lose the bytes it holds if the server stalls meanwhile (the read times out).
            while block := response.raw.read1(_CHUNK):
                fh.write(block)
                written += len(block)
                bar.update(len(block))
    if total is not None and written < total:
        raise _RetryableStatus(f"connection closed after {written} of {total} bytes")


def _handle_416(response: requests.Response, partial: Path, offset: int) -> None:
    """Range past the end: the partial file is complete, unless the server says the size differs."""
    match = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("Content-Range", "").strip())
    if match and int(match.group(1)) != offset:
        partial.unlink()
        raise _RetryableStatus(f"partial file has {offset} bytes but the file has {match.group(1)}")
    # Complete (or size unknown): the md5 check decides whether it is the right file.
