"""`python -m lstm_ae STAGE`: the same as the `lstm-ae` command."""

import sys

from lstm_ae.cli import main

sys.exit(main())
