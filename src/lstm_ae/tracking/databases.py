"""Database URLs as PostgreSQL's own tools take them, made to work with the installed driver."""

from __future__ import annotations

import importlib.util


def with_installed_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed (psycopg2, from requirements.lock).

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, which is not installed, so the
    URL that psql and createdb take would fail with "No module named 'psycopg'".
    """
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url
