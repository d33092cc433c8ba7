"""Command-line pieces both benchmarks share (``python -m benchmarks`` and ``benchmarks.http``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Where the reports are written: the docs pages link them.
DEFAULT_OUTPUT_DIR = Path("docs")


def positive_int(text: str) -> int:
    """An argparse type for counts and durations: 0 rounds or seconds measure nothing."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_report_arguments(parser: argparse.ArgumentParser, reports: str) -> None:
    """``--output-dir`` and ``--no-chart``: every benchmark writes its ``reports`` the same way.

    See :func:`write_reports`, which honours both.
    """
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"where {reports} are written (%(default)s)",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib)")


def write_reports(
    document: dict[str, Any],
    output_dir: Path,
    draw_chart: bool,
    write_json: Callable[[dict[str, Any], Path], Path],
    write_chart: Callable[[dict[str, Any], Path], Path],
    write_markdown: Callable[[dict[str, Any], Path, bool], Path],
) -> None:
    """A run's JSON, its chart unless ``--no-chart``, its page; then print where they went.

    Every benchmark ends this way, with its own report module's writers: the page
    links the chart only when it was drawn, so a run without matplotlib leaves no
    dangling image link.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    written = [write_json(document, output_dir)]
    if draw_chart:
        written.append(write_chart(document, output_dir))
    written.append(write_markdown(document, output_dir, draw_chart))
    print("wrote " + ", ".join(str(path) for path in written))
