"""The one timing helper, and the statistics every number in the report comes from."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

NANOSECONDS_PER_MILLISECOND = 1_000_000
#: The tail the report shows beside the median: one call in ten is slower than this.
TAIL_PERCENTILE = 0.90


class WrongResultError(RuntimeError):
    """A timed call returned something a correct cache would not (e.g. a miss for a hit)."""


def time_calls(
    call: Callable[[], Any], iterations: int, is_correct: Callable[[Any], bool], what: str
) -> list[int]:
    """Time ``iterations`` calls one by one; return each call's latency in nanoseconds.

    One clock read either side of each call and nothing else inside the window;
    the result is checked after the clock stops, so checking costs nobody time.
    """
    clock = time.perf_counter_ns
    latencies: list[int] = []
    for _ in range(iterations):
        started = clock()
        result = call()
        latencies.append(clock() - started)
        if not is_correct(result):
            raise WrongResultError(f"{what} returned a wrong result: {result!r:.200}")
    return latencies


def percentile(latencies: Sequence[int], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), no numpy needed."""
    ordered = sorted(latencies)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def to_ms(nanoseconds: float) -> float:
    return nanoseconds / NANOSECONDS_PER_MILLISECOND


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one contender's calls of one operation, in milliseconds."""

    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    calls: int

    @classmethod
    def of(cls, latencies: Sequence[int]) -> LatencyStats:
        return cls(
            median_ms=to_ms(statistics.median(latencies)),
            p90_ms=to_ms(percentile(latencies, TAIL_PERCENTILE)),
            min_ms=to_ms(min(latencies)),
            mean_ms=to_ms(statistics.fmean(latencies)),
            calls=len(latencies),
        )

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)
