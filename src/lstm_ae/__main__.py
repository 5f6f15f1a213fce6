"""`python -m lstm_ae STAGE`: the same as the `lstm-ae` command."""

import sys


def _missing_package_hint(exc: ModuleNotFoundError) -> str:
    """One line for a `python` that is not the project's environment: dvc.yaml runs the first
    `python` on PATH, so `.venv/bin/dvc repro` without an activated .venv runs the system's."""
    return (
        f"error: {sys.executable} cannot import {exc.name!r}: it is not the project's Python. "
        "Run `source .venv/bin/activate` (or `make install` first), then the command again"
    )


# The guard matters: tuning workers are spawned processes that re-import this module.
if __name__ == "__main__":
    try:
        from lstm_ae.cli import main

        code = main()
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] == "lstm_ae":
            raise
        print(_missing_package_hint(exc), file=sys.stderr)
        code = 1
    sys.exit(code)
