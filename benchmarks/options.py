"""Command-line pieces both benchmarks share (``python -m benchmarks`` and ``benchmarks.http``)."""

from __future__ import annotations

import argparse
from pathlib import Path

#: Where the reports are written: the docs pages link them.
DEFAULT_OUTPUT_DIR = Path("docs")


def positive_int(text: str) -> int:
    """An argparse type for counts and durations: 0 rounds or seconds measure nothing."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
