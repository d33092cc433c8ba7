"""Consecutive load waves against one server: does the tail stay put while it runs for long?

The rounds load each contender for a few seconds at a time, with pauses while
the others run; a server in production takes load without pauses for days. Here
each contender gets waves back to back (``--waves``; or, with ``--sustained``,
minutes of them), and after each wave the benchmark records what a long-lived
server accumulates:

- worker boots during the wave (gunicorn's "Booting worker" lines): a recycle
  costs its requests a cold near-cache and fresh connections;
- the ``*.db`` files in its Prometheus multiprocess directory, and the processes
  they belong to: before gunicorn.conf.py archived dead workers they grew by one
  set per recycle;
- how long ``GET /metrics`` takes, which reads every one of those files.

Flat columns wave after wave are the point; the wave's req/s and p99 show what a
recycle costs the clients.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import requests

from benchmarks.http.servers import Served
from benchmarks.http.wrk import run_wrk
from benchmarks.runner import Progress
from devtools.stampede import HTTP_TIMEOUT_SECONDS
from ecommerce.metrics_archive import processes_with_files

#: Three waves: the issue's regression (request-count recycling) showed from the
#: second wave on, so three show a trend where two could show chance.
DEFAULT_WAVES = 3
#: ``--sustained``: one wrk run per slice, the columns read after each.
SUSTAINED_SLICE_SECONDS = 10
#: Under ``--sustained`` workers are recycled by age unless told otherwise, so minutes
#: of load see several recycles (as deployed, the age limit is off and memory decides).
SUSTAINED_MAX_WORKER_AGE_SECONDS = 30
#: /metrics timed this many times after each wave; the median is reported.
METRICS_TIMINGS = 3
BOOT_LINE = "Booting worker"
MILLISECONDS_PER_SECOND = 1000.0


@dataclass(frozen=True)
class WaveResult:
    """One wave's load numbers and the server's state right after it."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: dict[str, int]
    #: Workers booted while the wave ran: recycles (or crashes) under load.
    worker_boots: int
    #: ``*.db`` files in the multiprocess directory after the wave; None for the bare app.
    metrics_files: int | None
    #: Processes those files belong to, the archive counted as one: live workers + 1.
    metrics_processes: int | None
    #: Median time of ``GET /metrics`` after the wave; None for the bare app.
    metrics_ms: float | None


def worker_boots(item: Served) -> int:
    """Workers the contender's master has booted so far, initial ones included."""
    return item.log_path.read_text(errors="replace").count(BOOT_LINE)


def metrics_files(item: Served) -> int | None:
    if not item.contender.is_app:
        return None
    return len(list(item.metrics_directory.glob("*.db")))


def metrics_processes(item: Served) -> int | None:
    if not item.contender.is_app:
        return None
    return len(processes_with_files(item.metrics_directory))


def metrics_milliseconds(item: Served) -> float | None:
    """Median time of a full ``/metrics`` answer, the directory read included."""
    if not item.contender.is_app:
        return None
    timings = []
    for _ in range(METRICS_TIMINGS):
        started = time.perf_counter()
        response = requests.get(f"{item.url}/metrics", timeout=HTTP_TIMEOUT_SECONDS)
        response.raise_for_status()
        timings.append((time.perf_counter() - started) * MILLISECONDS_PER_SECOND)
    return statistics.median(timings)


def run_wave(item: Served, wrk: str, seconds: int, connections: int) -> WaveResult:
    boots_before = worker_boots(item)
    result = run_wrk(wrk, item.target, seconds, connections)
    return WaveResult(
        **asdict(result),
        worker_boots=worker_boots(item) - boots_before,
        metrics_files=metrics_files(item),
        metrics_processes=metrics_processes(item),
        metrics_ms=metrics_milliseconds(item),
    )


def run_waves(
    served: Sequence[Served],
    wrk: str,
    waves: int,
    seconds: int,
    connections: int,
    progress: Progress,
) -> dict[str, list[dict[str, Any]]]:
    """``waves`` back-to-back wrk runs of ``seconds`` on each contender in turn."""
    results = {}
    for item in served:
        results[item.contender.name] = [
            _reported(item, index, waves, run_wave(item, wrk, seconds, connections), progress)
            for index in range(waves)
        ]
    return results


def run_sustained(
    served: Sequence[Served], wrk: str, seconds: int, connections: int, progress: Progress
) -> dict[str, list[dict[str, Any]]]:
    """``seconds`` of load on each contender in slices of SUSTAINED_SLICE_SECONDS."""
    slice_seconds = min(SUSTAINED_SLICE_SECONDS, seconds)
    slices = max(1, round(seconds / slice_seconds))
    return run_waves(served, wrk, slices, slice_seconds, connections, progress)


def _reported(
    item: Served, index: int, waves: int, wave: WaveResult, progress: Progress
) -> dict[str, Any]:
    files = "-" if wave.metrics_files is None else f"{wave.metrics_files}/{wave.metrics_processes}"
    metrics_ms = "-" if wave.metrics_ms is None else f"{wave.metrics_ms:.1f} ms"
    progress(
        f"  {item.contender.name:<14} wave {index + 1}/{waves} "
        f"{wave.requests_per_second:>9.1f} req/s  p99 {wave.p99_ms:.2f} ms  "
        f"boots {wave.worker_boots}  files/pids {files}  /metrics {metrics_ms}"
    )
    return asdict(wave)
