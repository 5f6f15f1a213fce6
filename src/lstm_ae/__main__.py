"""`python -m lstm_ae STAGE`: the same as the `lstm-ae` command."""

import sys

from lstm_ae.cli import main

# The guard matters: tuning workers are spawned processes that re-import this module.
if __name__ == "__main__":
    sys.exit(main())
