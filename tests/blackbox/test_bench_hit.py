"""Smoke test for ``python -m benchmarks.hit``: it runs end to end in a process of its own
(it sets PROMETHEUS_MULTIPROC_DIR, as deployed, which must not leak into the suite).
The numbers are never judged here."""

from __future__ import annotations

import subprocess
import sys

from devtools import REPOSITORY_ROOT


def test_the_hit_benchmark_prints_the_app_the_floor_and_the_difference() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.hit", "--calls", "20", "--rounds", "1"],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line for line in finished.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[2:]] == [
        "| app (SimpleCache, logging, metrics)",
        "| bare Flask, same bytes",
        "| the app's own work",
    ]
