"""``python -m lrpt.app.cli``: the ``lrpt`` command."""

import sys

from lrpt.app.cli import main

sys.exit(main())
