"""Servers a test starts on loopback: a free port, JSON requests, and `mlflow models serve`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
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
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        assert server.poll() is None, log.read_text()[-4000:]
        yield base
    finally:
        stop(server)
