"""One ``wrk`` run against one URL, and the numbers read from what it prints.

wrk is a closed-loop load generator: each connection sends its next request as
soon as the previous answer arrives, so req/s is the server's throughput at
that concurrency. Its percentiles are corrected for coordinated omission: for
every request slower than twice the mean time between requests on a connection,
wrk 4 adds the samples a steady client would have collected meanwhile (one per
interval, ever shorter). A stall therefore weighs in p99 as it would for a steady
stream of users, not as one slow sample.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

#: One wrk thread per core of the 2-core machine the numbers are taken on; wrk
#: refuses more threads than connections.
WRK_THREADS = 2
#: Beyond the run's own duration: wrk needs a moment to connect and to report.
WRK_GRACE_SECONDS = 30
#: wrk's unit suffixes for a latency (format_time_us in its source).
#: wrk's binary prefixes for a byte count (format_binary in its source: powers of 1024).
BYTES_PER_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
MILLISECONDS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}

_REQUESTS_PER_SECOND = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_REQUEST_COUNT = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$", re.MULTILINE)
_BYTES_READ = re.compile(r"^\s*\d+ requests in [^,]+, ([\d.]+)([KMGTP]?)B read\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.MULTILINE
)
SOCKET_ERROR_KINDS = ("connect", "read", "write", "timeout")


class WrkError(RuntimeError):
    """wrk failed, or saw answers a healthy server does not give (4xx/5xx)."""


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    #: By kind (connect, read, write, timeout); wrk prints them only when there are any.
    socket_errors: dict[str, int]


def find_wrk() -> str | None:
    return shutil.which("wrk")


def wrk_report(
    wrk: str, url: str, duration_seconds: int, connections: int, headers: Sequence[str] = ()
) -> str:
    """What ``wrk --latency`` prints after loading ``url``; WrkError if wrk fails.

    ``headers`` are sent with every request (``"Accept-Encoding: gzip"``): without
    one wrk sends no Accept-Encoding at all, the plain client.
    """
    command = [
        wrk,
        f"--threads={min(WRK_THREADS, connections)}",
        f"--connections={connections}",
        f"--duration={duration_seconds}s",
        "--latency",
        *(argument for header in headers for argument in ("--header", header)),
        url,
    ]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=duration_seconds + WRK_GRACE_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise WrkError(
            f"{' '.join(command)} exited with {completed.returncode}:\n"
            f"{completed.stdout}{completed.stderr}"
        )
    return completed.stdout


def run_wrk(
    wrk: str, url: str, duration_seconds: int, connections: int, headers: Sequence[str] = ()
) -> WrkResult:
    """Load ``url`` for ``duration_seconds`` over ``connections`` keep-alive connections."""
    return parse_wrk_output(wrk_report(wrk, url, duration_seconds, connections, headers))


def parse_bytes_read(output: str) -> int:
    """The bytes wrk read in the run (headers and bodies), from ``N requests in Ts, X read``.

    wrk prints them with two decimals in binary units (``4.64MB``), so the figure is
    good to 0.5 % or better: enough to tell a gzip body from an identity one.
    """
    match = _BYTES_READ.search(output)
    if match is None:
        raise WrkError(f"no {_BYTES_READ.pattern!r} in wrk's output:\n{output}")
    value, unit = match.groups()
    return round(float(value) * BYTES_PER_UNIT[unit])


def parse_wrk_output(output: str) -> WrkResult:
    """The numbers of ``wrk --latency``'s report; WrkError if any answer was 4xx/5xx.

    A 4xx/5xx is answered in microseconds, so a run with some would report a
    speed the service does not have: it stops the benchmark instead.
    """
    non_2xx = _NON_2XX.search(output)
    if non_2xx:
        raise WrkError(f"{non_2xx.group(1)} answers were not 2xx or 3xx:\n{output}")
    socket_errors = _SOCKET_ERRORS.search(output)
    return WrkResult(
        requests_per_second=float(_required(_REQUESTS_PER_SECOND, output)),
        p50_ms=_percentile_ms(output, 50),
        p99_ms=_percentile_ms(output, 99),
        requests=int(_required(_REQUEST_COUNT, output)),
        socket_errors=dict(
            zip(
                SOCKET_ERROR_KINDS,
                map(int, socket_errors.groups()) if socket_errors else [0] * 4,
                strict=True,
            )
        ),
    )


def _required(pattern: re.Pattern[str], output: str) -> str:
    match = pattern.search(output)
    if match is None:
        raise WrkError(f"no {pattern.pattern!r} in wrk's output:\n{output}")
    return match.group(1)


def _percentile_ms(output: str, percentile: int) -> float:
    """One line of the ``Latency Distribution`` block, e.g. ``    99%    1.04s``, in ms."""
    pattern = re.compile(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
    match = pattern.search(output)
    if match is None:
        raise WrkError(f"no {percentile}% latency in wrk's output (run with --latency):\n{output}")
    value, unit = match.groups()
    return float(value) * MILLISECONDS_PER_UNIT[unit]
