"""``python -m benchmarks.http``: see ``benchmarks.http.cli``."""

import sys

from benchmarks.http.cli import main

sys.exit(main())
