"""Entry point for ``python -m mathkit``."""

import sys

from mathkit.cli import main

sys.exit(main())
