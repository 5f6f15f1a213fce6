"""Tests for fetch: local copies, md5 checks, and HTTP resume/retry against a loopback server."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lstm_ae.data import download
from lstm_ae.data.download import FetchError, fetch, file_md5

# Seeded: test ids include its md5, and pytest-xdist workers must collect the same ids.
PAYLOAD = random.Random(0).randbytes(200_000)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
CUT_AFTER = 50_000
STALL_S = 1.5  # longer than the tests' client timeout, 0.3 s


class _Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; ``server.plan`` scripts misbehaviour for the first requests."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        server.ranges.append(self.headers.get("Range"))
        action = server.plan.pop(0) if server.plan else server.default
        if action == "stall_headers":  # a server that accepts the request, then says nothing
            time.sleep(STALL_S)
            return
        if action in ("500", "404", "429"):
            self.send_response(int(action))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and action != "ignore_range":
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
        if start >= len(server.payload):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(server.payload)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = server.payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header(
                "Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}"
            )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # "cut" promises the whole body but hangs up part-way, as a dropped connection would;
        # "stall_body" sends part of it, then goes silent for longer than the client waits.
        self.wfile.write(body[:CUT_AFTER] if action in ("cut", "stall_body") else body)
        self.wfile.flush()
        if action == "stall_body":
            time.sleep(STALL_S)


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.payload, httpd.plan, httpd.default, httpd.ranges = PAYLOAD, [], "serve", []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _url(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/cifar-10-python.tar.gz"


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "archive.tar.gz"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def test_file_md5_matches_hashlib(source_file: Path) -> None:
    assert file_md5(source_file, chunk=1000) == PAYLOAD_MD5


def test_local_absolute_path(source_file: Path, tmp_path: Path) -> None:
    dest = tmp_path / "raw" / "archive.tar.gz"
    assert fetch(str(source_file), PAYLOAD_MD5, dest, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["archive.tar.gz"]


def test_local_relative_path_and_uppercase_md5(
    source_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "out.tar.gz"
    fetch("src/archive.tar.gz", PAYLOAD_MD5.upper(), dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_file_url(source_file: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar.gz"
    fetch(source_file.as_uri(), PAYLOAD_MD5, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_missing_local_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.tar.gz"
    with pytest.raises(FetchError, match="nowhere.tar.gz: no such file"):
        fetch(str(missing), PAYLOAD_MD5, tmp_path / "out.tar.gz", progress=False)
    assert not (tmp_path / "out.tar.gz").exists()


def test_md5_mismatch_removes_the_file(source_file: Path, tmp_path: Path) -> None:
    dest_dir = tmp_path / "raw"
    wrong = "0" * 32
    with pytest.raises(FetchError) as info:
        fetch(str(source_file), wrong, dest_dir / "out.tar.gz", progress=False)
    message = str(info.value)
    assert str(source_file) in message
    assert f"md5 is {PAYLOAD_MD5}, expected {wrong}" in message
    assert "removed" in message
    assert list(dest_dir.iterdir()) == []


def test_valid_dest_is_kept_without_fetching(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dest = tmp_path / "out.tar.gz"
    dest.write_bytes(PAYLOAD)
    before = dest.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="lstm_ae.data.download"):
        # The source does not exist, so any attempt to fetch would fail.
        assert fetch(str(tmp_path / "missing"), PAYLOAD_MD5, dest, progress=False) == dest
    assert dest.stat().st_mtime_ns == before
    assert "not fetching it again" in caplog.text


def test_stale_dest_is_replaced(source_file: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar.gz"
    dest.write_bytes(b"stale")
    fetch(str(source_file), PAYLOAD_MD5, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    "bad", ["", "abc", "g" * 32, PAYLOAD_MD5 + "0"], ids=["empty", "short", "not-hex", "too-long"]
)
def test_bad_md5_string_fails_before_any_work(bad: str, source_file: Path, tmp_path: Path) -> None:
    dest = tmp_path / "raw" / "out.tar.gz"
    with pytest.raises(FetchError, match="not 32 hex digits"):
        fetch(str(source_file), bad, dest, progress=False)
    assert not dest.parent.exists()


def test_http_download(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar.gz"
    fetch(_url(server), PAYLOAD_MD5, dest, progress=False, backoff_s=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [None]
    assert not dest.with_name("out.tar.gz.partial").exists()


def test_http_resumes_after_cut_connection(
    server: ThreadingHTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.plan = ["cut"]
    dest = tmp_path / "out.tar.gz"
    with caplog.at_level(logging.WARNING, logger="lstm_ae.data.download"):
        fetch(_url(server), PAYLOAD_MD5, dest, retries=2, progress=False, backoff_s=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={CUT_AFTER}-"]
    assert "retrying" in caplog.text


def test_http_resumes_existing_partial(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar.gz"
    dest.with_name("out.tar.gz.partial").write_bytes(PAYLOAD[:1234])
    fetch(_url(server), PAYLOAD_MD5, dest, progress=False, backoff_s=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=1234-"]


def test_http_starts_over_when_range_is_ignored(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    server.default = "ignore_range"
    dest = tmp_path / "out.tar.gz"
    dest.with_name("out.tar.gz.partial").write_bytes(b"garbage that must be discarded")
    fetch(_url(server), PAYLOAD_MD5, dest, progress=False, backoff_s=0)
    assert dest.read_bytes() == PAYLOAD


def test_http_416_with_complete_partial_is_done(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar.gz"
    dest.with_name("out.tar.gz.partial").write_bytes(PAYLOAD)
    fetch(_url(server), PAYLOAD_MD5, dest, progress=False, backoff_s=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_http_retries_server_errors(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    server.plan = ["500", "429"]
    dest = tmp_path / "out.tar.gz"
    fetch(_url(server), PAYLOAD_MD5, dest, retries=2, progress=False, backoff_s=0)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.ranges) == 3


def test_http_gives_up_after_retries(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    server.default = "500"
    dest = tmp_path / "out.tar.gz"
    with pytest.raises(FetchError, match="failed after 3 attempts"):
        fetch(_url(server), PAYLOAD_MD5, dest, retries=2, progress=False, backoff_s=0)
    assert len(server.ranges) == 3
    assert not dest.exists()


def test_http_404_fails_at_once(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    server.default = "404"
    dest = tmp_path / "out.tar.gz"
    with pytest.raises(FetchError) as info:
        fetch(_url(server), PAYLOAD_MD5, dest, retries=5, progress=False, backoff_s=0)
    assert _url(server) in str(info.value) and "404" in str(info.value)
    assert len(server.ranges) == 1
    assert not dest.exists()


def test_http_md5_mismatch_removes_partial(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar.gz"
    with pytest.raises(FetchError, match="md5 is"):
        fetch(_url(server), "f" * 32, dest, progress=False, backoff_s=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stall", ["stall_headers", "stall_body"])
def test_http_slow_server_times_out_and_the_retry_resumes(
    stall: str, server: ThreadingHTTPServer, tmp_path: Path
) -> None:
    server.plan = [stall]
    dest = tmp_path / "out.tar.gz"
    fetch(_url(server), PAYLOAD_MD5, dest, retries=2, timeout_s=0.3, progress=False, backoff_s=0)
    assert dest.read_bytes() == PAYLOAD
    resumed_from = CUT_AFTER if stall == "stall_body" else None
    assert server.ranges == [None, f"bytes={resumed_from}-" if resumed_from else None]


def test_http_slow_server_gives_a_clear_error_and_keeps_the_partial_for_next_time(
    server: ThreadingHTTPServer, tmp_path: Path
) -> None:
    server.default = "stall_body"
    dest = tmp_path / "out.tar.gz"
    with pytest.raises(FetchError, match=r"failed after 2 attempts \(.*[Tt]imed? ?out.*\); .*\(it resumes\)"):
        fetch(_url(server), PAYLOAD_MD5, dest, retries=1, timeout_s=0.3, progress=False, backoff_s=0)
    assert not dest.exists()
    partial = dest.with_name(dest.name + ".partial")
    assert partial.read_bytes() == PAYLOAD[: 2 * CUT_AFTER]  # each attempt kept what it received
    server.default = "serve"
    fetch(_url(server), PAYLOAD_MD5, dest, progress=False, backoff_s=0)
    assert dest.read_bytes() == PAYLOAD and not partial.exists()
    assert server.ranges[-1] == f"bytes={2 * CUT_AFTER}-"  # the next run resumed from there


def test_http_backs_off_exponentially(server: ThreadingHTTPServer, tmp_path: Path, monkeypatch) -> None:
    delays = []
    monkeypatch.setattr(download.time, "sleep", delays.append)
    server.plan = ["500", "500", "500"]
    fetch(_url(server), PAYLOAD_MD5, tmp_path / "out.tar.gz", retries=3, progress=False, backoff_s=0.5)
    assert delays == [0.5, 1.0, 2.0]
