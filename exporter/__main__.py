"""``python -m exporter`` is the same as the ``analytics-dashboard`` command."""

import sys

from .cli import main

sys.exit(main())
