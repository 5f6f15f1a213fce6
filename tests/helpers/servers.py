"""Servers a test starts on loopback: a free port, JSON requests, `mlflow models serve`, and a
stand-in for a tracking server's /health."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_json(url: str, body: object, timeout_s: float = 180) -> tuple[int, dict]:
    """POST ``body`` as JSON; the status and the decoded answer, error answers included."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def stop(server: subprocess.Popen) -> None:
    """The server and the workers it started (its process group): asked first, then killed."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        try:
            server.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_until_answering(url: str, server: subprocess.Popen, log: Path, ready_s: float) -> None:
    """Poll ``url`` until it answers 200; a server that dies first, or never answers, fails the
    test with the end of its ``log``."""
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-4000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {ready_s} s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def model_server(
    model_uri: str, cwd: Path, env: dict[str, str], log: Path, ready_s: float = 300
) -> Iterator[str]:
    """`mlflow models serve` of ``model_uri`` on a free loopback port, its base URL once /ping
    answers; stopped, with its workers, however the test ends. Its stderr goes to ``log``, whose
    end a server that died on start-up fails the test with."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base}/ping", server, log, ready_s)
        yield base
    finally:
        stop(server)


class TrackingServer:
    """`lstm-ae tracking-server` on a free loopback port, as a user starts it (it creates its
    database); stop() and start() again keep its store, as a restart does."""

    def __init__(
        self, backend: str, artifacts: Path, log: Path, env: dict[str, str], workers: int = 2
    ) -> None:
        """``workers``: the server's processes; on 2 cores MLflow's 4 only add start-up time."""
        self.backend, self.artifacts, self.log, self.env, self.workers = backend, artifacts, log, env, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, ready_s: float = 300) -> None:
        """Start it and wait until /health answers (a first start also creates MLflow's tables)."""
        command = [sys.executable, "-m", "lstm_ae", "tracking-server", "--backend-store-uri", self.backend]
        command += ["--create-database", "--artifacts-destination", str(self.artifacts)]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        with self.log.open("a") as stderr:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        wait_until_answering(f"{self.url}/health", self.process, self.log, ready_s)

    def stop(self) -> None:
        """The server and its workers, asked to stop (SIGTERM), as a service manager does."""
        if self.process is not None:
            stop(self.process)
            self.process = None


class Health(http.server.BaseHTTPRequestHandler):
    """GET /health answers with ``status``, as a tracking server (or a proxy in front of one) does."""

    status = 200

    def do_GET(self) -> None:  # the name http.server calls
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def answering(status: int) -> Iterator[str]:
    """A loopback server whose /health answers ``status``: its URL, for the length of the block."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Answer", (Health,), {"status": status}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
