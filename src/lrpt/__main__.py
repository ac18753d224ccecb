"""``python -m lrpt``: the ``lrpt`` command (as launchers such as torchrun run it)."""

import sys

from lrpt.app.cli import main

sys.exit(main())
