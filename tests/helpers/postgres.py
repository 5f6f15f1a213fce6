"""A throw-away PostgreSQL cluster from Debian's `postgresql` package, on a Unix socket (no TCP),
for the tests and benchmarks that need a real database server."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.servers import free_port


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or where Debian puts them."""
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    return Path(found).resolve().parent if found else None


def require_postgres() -> Path:
    """The server binaries, or skip the test (fail it under CI, where .ci/run installs them)."""
    import pytest

    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs Debian's `postgresql` package")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return bindir


@dataclass(frozen=True)
class Cluster:
    bindir: Path
    socket_dir: Path
    port: int
    as_user: tuple[str, ...]

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (psycopg2, from requirements.lock) for ``database`` as user postgres."""
        return f"postgresql+psycopg2://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def create(self, database: str) -> str:
        """Create ``database``; its URL."""
        self.run("createdb", "-h", self.socket_dir, "-p", self.port, "-U", "postgres", database)
        return self.url(database)

    def run(self, tool: str, *args: object) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / tool), *map(str, args)], check=True, capture_output=True
        )


@contextlib.contextmanager
def throwaway_postgres(bindir: Path | None = None) -> Iterator[Cluster]:
    """A fresh cluster in a temporary folder, trusting local connections, without fsync; removed,
    server and all, however the caller ends."""
    bindir = bindir or postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="lstm-ae-pg-"))
    # initdb refuses to run as root: run the server as the postgres user that the package creates.
    as_user = ("runuser", "-u", "postgres", "--") if os.geteuid() == 0 else ()
    if as_user:
        shutil.chown(base, "postgres")
    cluster = Cluster(bindir, base, free_port(), as_user)
    data = base / "data"
    try:
        cluster.run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {cluster.port} -k {base} -c listen_addresses='' -c fsync=off"
        cluster.run("pg_ctl", "-D", data, "-l", base / "server.log", "-w", "-o", options, "start")
        yield cluster
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)
