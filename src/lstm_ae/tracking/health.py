"""Whether the tracking server answers now: one quick probe instead of MLflow's 4-minute retries."""

from __future__ import annotations

import os
import time

import mlflow
import requests

from lstm_ae.errors import UserError
from lstm_ae.tracking.store import tracking_uri

SERVER_PROBE_S = 5  # one /health request; a server that takes longer counts as down for this epoch
SERVER_START_WAIT_S = 5  # a stage's start tolerates a server that is just restarting


class TrackingServerDown(UserError):
    """MLFLOW_TRACKING_URI names a tracking server that does not answer."""


# What MLflow's client raises once its retries against a server that does not answer are spent.
OUTAGE_ERRORS = (mlflow.exceptions.MlflowException, requests.exceptions.RequestException)


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one short line, for a one-line warning or error."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def server_trouble(uri: str, timeout_s: float = SERVER_PROBE_S) -> str | None:
    """Why the tracking server at ``uri`` cannot take requests now, in a few words; None if it can
    (its /health answers) or if ``uri`` is not a server (a SQLite file).

    One request, no retries: MLflow's client retries for about 4 minutes, which is what a stage's
    start and an epoch's end must not wait for. TLS is verified as MLflow's client does it.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
    verify = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or not insecure
    try:
        answer = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s, verify=verify)
    except requests.exceptions.Timeout:
        return f"no answer within {timeout_s:g} s"
    except requests.exceptions.ConnectionError as exc:
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    except requests.exceptions.RequestException as exc:
        return type(exc).__name__
    # A reverse proxy answers 502/503 while MLflow behind it is down; 401/403 is a server that is up.
    return f"HTTP {answer.status_code}" if answer.status_code >= 500 else None


def trouble_after_waiting(uri: str, wait_s: float, poll_s: float) -> str | None:
    """What is wrong with the server at ``uri`` after asking every ``poll_s`` for up to
    ``wait_s`` seconds; None as soon as it answers (at once for a local store)."""
    deadline = time.monotonic() + wait_s
    while (trouble := server_trouble(uri)) is not None and time.monotonic() < deadline:
        time.sleep(poll_s)
    return trouble


def require_tracking_server(wait_s: float = SERVER_START_WAIT_S) -> None:
    """Fail in one line, before any work, if MLFLOW_TRACKING_URI names a server that does not answer
    within ``wait_s``.

    Otherwise MLflow's client retries for about 4 minutes and the stage ends in a traceback:
    train before its first epoch, evaluate after all its work.
    """
    uri = tracking_uri()
    if (trouble := trouble_after_waiting(uri, wait_s, poll_s=1)) is not None:
        raise TrackingServerDown(
            f"the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) does not answer ({trouble}); "
            "start it (`make tracking-server`, see docs/tracking-server.md), "
            "or unset MLFLOW_TRACKING_URI to log to the project's mlflow.db"
        )
