"""``python -m training`` is ``khabar-train`` (and ``torchrun --nproc_per_node N -m training CONFIG`` works)."""

import sys

from training.cli import main

sys.exit(main())
