"""`lstm-ae tracking-server`: MLflow's tracking server on PostgreSQL with proxied artifacts, on loopback."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import NoReturn

from lstm_ae.errors import UserError
from lstm_ae.tracking.databases import with_installed_driver

log = logging.getLogger(__name__)


def redact(url: str) -> str:
    """A database URL without its password, fit for logs."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparsable URL>"


def create_database(url: str) -> bool:
    """Create the PostgreSQL database that ``url`` names unless it exists; True if it was created.

    MLflow creates its tables on first start, but not the database itself; connecting to the
    server's `postgres` database to create it is what `createdb` does.
    """
    import sqlalchemy

    try:
        target = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise UserError(f"--backend-store-uri: {exc}") from None
    if not target.drivername.startswith("postgresql") or not target.database:
        raise UserError(
            f"--create-database needs a PostgreSQL URL naming a database, such as "
            f"postgresql://USER@HOST/mlflow (got {redact(url)})"
        )
    engine = sqlalchemy.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            query = sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :name")
            if connection.execute(query, {"name": target.database}).scalar():
                return False
            quoted = engine.dialect.identifier_preparer.quote(target.database)
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {quoted}"))
            return True
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0][:300]
        raise UserError(
            f"cannot create database {target.database!r} at {redact(url)} ({reason}); check the URL, that "
            "PostgreSQL is running and that the user may create databases (or create it with createdb)"
        ) from None
    finally:
        engine.dispose()


def server_command(artifacts: str, host: str, port: int, workers: int | None) -> list[str]:
    """`mlflow server` serving artifacts through itself (clients need no access to the artifact
    store); the backend store travels in MLFLOW_BACKEND_STORE_URI, out of sight of `ps`."""
    command = [sys.executable, "-m", "mlflow", "server", "--serve-artifacts"]
    command += ["--artifacts-destination", artifacts, "--host", host, "--port", str(port)]
    return command + (["--workers", str(workers)] if workers else [])


def run(
    backend: str | None, artifacts: str, host: str, port: int, workers: int | None, create: bool
) -> NoReturn:
    """Create the database if asked, then become `mlflow server` (signals reach it directly)."""
    backend = backend or os.environ.get("MLFLOW_BACKEND_STORE_URI")
    if not backend:
        raise UserError(
            "no backend store: give --backend-store-uri postgresql://USER@HOST/mlflow "
            "(or set MLFLOW_BACKEND_STORE_URI)"
        )
    backend = with_installed_driver(backend)
    if create and create_database(backend):
        log.info("created database %s", redact(backend))
    if "://" not in artifacts:  # a folder: absolute, so the server's working directory does not matter
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        artifacts = str(Path(artifacts).resolve())
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": backend}
    # The job runner serves MLflow's GenAI jobs, which this project never starts; it costs 8 more
    # processes and made a start take 12.7 s instead of 8.2 s (2 workers, the 2-core machine).
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    log.info(
        "MLflow tracking server: backend %s, artifacts %s; point the project at it with\n"
        "  export MLFLOW_TRACKING_URI=http://%s:%d",
        redact(backend),
        artifacts,
        shown,
        port,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    command = server_command(artifacts, host, port, workers)
    os.execve(sys.executable, command, env)
