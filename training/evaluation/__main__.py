"""``python -m training.evaluation``: the same as ``khabar-train evaluate``."""

import sys

from training.evaluation.cli import main

sys.exit(main())
