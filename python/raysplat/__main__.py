"""``python -m raysplat`` (and ``torchrun -m raysplat``): the command line."""

import sys

from raysplat.cli import main

sys.exit(main())
