"""The base of every error whose message tells the user what to fix; the CLI prints it as one line."""

import signal


class UserError(Exception):
    """Bad input or a missing prerequisite, not a bug: shown without a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a kind of Ctrl-C so that every interrupt path (MLflow runs ended as
    KILLED, trials recorded as failed, temporary files removed) also covers `kill`, `timeout`
    and job schedulers, whose default SIGTERM would end the process with no clean-up at all."""

    signum = signal.SIGTERM
