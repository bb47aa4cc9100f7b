"""``python -m inkapp`` (used by ``torchrun -m inkapp train ...``)."""
import sys

from .cli import main

sys.exit(main())
