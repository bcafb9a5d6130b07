"""``python -m training`` is ``khabar-train`` (and ``accelerate launch -m training CONFIG`` works)."""

import sys

from training.cli import main

sys.exit(main())
