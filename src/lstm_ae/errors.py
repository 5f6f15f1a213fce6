"""The base of every error whose message tells the user what to fix; the CLI prints it as one line."""


class UserError(Exception):
    """Bad input or a missing prerequisite, not a bug: shown without a traceback."""
