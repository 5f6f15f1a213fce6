"""A throw-away OpenSSH server on loopback, the way a team's DVC remote is reached: its own host key,
one client key, this machine's user, everything in one temporary folder."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.servers import free_port, stop

SSHD = Path("/usr/sbin/sshd") if Path("/usr/sbin/sshd").exists() else shutil.which("sshd")
# sshd refuses to start as root without its privilege separation folder; Debian's service makes it.
PRIVSEP_DIR = Path("/run/sshd")


@dataclass(frozen=True)
class SSHServer:
    host: str
    port: int
    user: str
    keyfile: Path  # the client's private key, as `dvc remote modify --local NAME keyfile` takes it


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def _config(folder: Path, port: int) -> Path:
    """Key logins only, for this user (root too: `prohibit-password`); files outside the user's home
    are fine (StrictModes no), and SFTP, which DVC's SSH remote speaks, runs inside sshd."""
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\n"
        f"HostKey {_keygen(folder / 'host_key')}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "Subsystem sftp internal-sftp\n",
        encoding="utf-8",
    )
    return config


def _answers(port: int) -> bool:
    """Whether an SSH server greets on the port (its first bytes are `SSH-`)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@contextlib.contextmanager
def ssh_server(folder: Path, ready_s: float = 30) -> Iterator[SSHServer]:
    """`sshd -D` on a free loopback port until the block ends; a server that does not greet in
    ``ready_s`` fails the test with the end of its log."""
    folder.mkdir(parents=True, exist_ok=True)
    client_key = _keygen(folder / "client_key")
    (folder / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text(), encoding="utf-8")
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    log = folder / "sshd.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(_config(folder, port))],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + ready_s
        while not _answers(port):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.2)
        yield SSHServer("127.0.0.1", port, getpass.getuser(), client_key)
    finally:
        stop(server)
