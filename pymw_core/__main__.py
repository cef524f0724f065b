"""``python -m pymw_core``: the ``pymw`` command."""

import sys

from pymw_core.cli import main

sys.exit(main())
