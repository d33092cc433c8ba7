"""Warm-up, interleaved rounds, and the numbers: medians, p90s, ratios, targets.

Why interleaved: DynamoDB Local is a JVM sharing two cores with the client, so
its speed drifts (JIT, garbage collection, a neighbour's burst). Timing all of
one contender and then all of the next would hand the drift to whoever ran
last. Instead every round times every operation on every contender back to
back, and the contender that goes first rotates from round to round.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from benchmarks.contenders import CONTENDER_FACTORIES, Contender, dynamodb_client
from benchmarks.operations import (
    BATCH_SIZE,
    OPERATIONS,
    RATIO_PAIRS,
    TARGETS,
    Operation,
    TimedCall,
)
from benchmarks.timing import LatencyStats, time_calls, to_ms

#: Calls per contender per round for single-key operations: a median over
#: rounds x 200 calls moves by well under 1 % between runs here.
DEFAULT_ITERATIONS = 200
#: A batch call moves 100 keys, so it runs this many times fewer calls per round.
BATCH_ITERATION_DIVISOR = 10
#: Measured rounds: enough per-round ratios to see the spread; with the warm-up
#: round and DynamoDB Local's start the default run takes about 1.5 minutes here.
DEFAULT_ROUNDS = 10
#: Untimed rounds first: they fill connection pools and warm DynamoDB Local's JIT.
#: With one, the first measured round was still among the slowest (cachelib's
#: slowest set_many(100) round in 3 of 5 runs, ours' up to 2x its later rounds).
WARMUP_ROUNDS = 2
#: Bumped whenever the JSON document changes shape.
SCHEMA_VERSION = 1

Progress = Callable[[str], None]
T = TypeVar("T")
#: (operation name, contender name): the unit every measurement is stored under.
Cell = tuple[str, str]


def print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BenchmarkSettings:
    """How much to measure; the defaults keep ``make bench`` under three minutes."""

    rounds: int = DEFAULT_ROUNDS
    iterations: int = DEFAULT_ITERATIONS
    warmup_rounds: int = WARMUP_ROUNDS

    @property
    def batch_iterations(self) -> int:
        return max(1, self.iterations // BATCH_ITERATION_DIVISOR)

    def calls_per_round(self, operation: Operation) -> int:
        return self.batch_iterations if operation.batch else self.iterations


@dataclass
class Measurements:
    """Every timed latency (ns) of the measured rounds, and each round's median (ms)."""

    latencies: dict[Cell, list[int]]
    round_medians_ms: dict[Cell, list[float]]


def run_benchmark(
    endpoint_url: str,
    settings: BenchmarkSettings,
    contender_names: Sequence[str] = tuple(CONTENDER_FACTORIES),
    drop_tables: bool = False,
    progress: Progress = print_progress,
) -> dict[str, Any]:
    """Measure every contender on ``endpoint_url`` and return the result document.

    Tables get a per-run suffix so runs against a long-lived endpoint never meet
    old items; ``drop_tables`` removes them afterwards (pointless on a private,
    in-memory DynamoDB Local that is about to stop).
    """
    run_id = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    contenders = [
        CONTENDER_FACTORIES[name](endpoint_url, f"bench-{name}-{run_id}")
        for name in contender_names
    ]
    try:
        measurements = measure(contenders, settings, progress)
    finally:
        if drop_tables:
            _drop_tables(endpoint_url, [contender.table_name for contender in contenders])
    return summarize(contenders, settings, measurements, time.perf_counter() - started)


def measure(
    contenders: Sequence[Contender], settings: BenchmarkSettings, progress: Progress
) -> Measurements:
    """Prepare every operation, then run warm-up and measured rounds, interleaved."""
    calls: dict[Cell, TimedCall] = {
        (operation.name, contender.name): operation.prepare(contender)
        for operation in OPERATIONS
        for contender in contenders
        if operation.name in contender.operations
    }
    measurements = Measurements(defaultdict(list), defaultdict(list))
    total_rounds = settings.warmup_rounds + settings.rounds
    for round_index in range(total_rounds):
        round_started = time.perf_counter()
        for operation in OPERATIONS:
            timed = [c for c in contenders if (operation.name, c.name) in calls]
            for contender in rotated(timed, round_index):
                cell = (operation.name, contender.name)
                latencies = time_calls(
                    calls[cell],
                    settings.calls_per_round(operation),
                    _checker(operation, contender),
                    what=f"{contender.label} {operation.name}",
                )
                if round_index >= settings.warmup_rounds:
                    measurements.latencies[cell].extend(latencies)
                    measurements.round_medians_ms[cell].append(to_ms(statistics.median(latencies)))
        kind = "warm-up" if round_index < settings.warmup_rounds else "measured"
        progress(
            f"round {round_index + 1}/{total_rounds} ({kind}) "
            f"took {time.perf_counter() - round_started:.1f}s"
        )
    return measurements


def rotated(contenders: Sequence[T], round_index: int) -> list[T]:
    """Round-robin: a different contender goes first each round."""
    if not contenders:
        return []
    shift = round_index % len(contenders)
    return [*contenders[shift:], *contenders[:shift]]


def _checker(operation: Operation, contender: Contender) -> Callable[[Any], bool]:
    return lambda result: operation.is_correct(contender.decoded(result))


def _drop_tables(endpoint_url: str, table_names: Sequence[str]) -> None:
    client = dynamodb_client(endpoint_url)
    for table_name in table_names:
        client.delete_table(TableName=table_name)


def summarize(
    contenders: Sequence[Contender],
    settings: BenchmarkSettings,
    measurements: Measurements,
    measured_seconds: float,
) -> dict[str, Any]:
    """The result document: the JSON on disk, and what the table and chart are drawn from."""
    operations: dict[str, Any] = {}
    for operation in OPERATIONS:
        stats = {
            contender.name: {
                **LatencyStats.of(measurements.latencies[cell]).as_dict(),
                "round_medians_ms": measurements.round_medians_ms[cell],
            }
            for contender in contenders
            if (cell := (operation.name, contender.name)) in measurements.latencies
        }
        operations[operation.name] = {
            "calls_per_round": settings.calls_per_round(operation),
            "latency": stats,
            "ratios": {
                f"{numerator}/{denominator}": _ratio(stats[numerator], stats[denominator])
                for numerator, denominator in RATIO_PAIRS
                if numerator in stats and denominator in stats
            },
        }
    targets = [
        target.verdict(ratio)
        for target in TARGETS
        if (ratio := operations[target.operation]["ratios"].get(target.ratio_name))
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "parameters": {
            **asdict(settings),
            "batch_iterations": settings.batch_iterations,
            "batch_size": BATCH_SIZE,
            "interleaving": "every round times each operation on every contender back to "
            "back; the first contender rotates each round",
        },
        "contenders": {contender.name: contender.label for contender in contenders},
        "operations": operations,
        "targets": targets,
        "all_targets_met": bool(targets) and all(target["met"] for target in targets),
        "measured_seconds": round(measured_seconds, 1),
    }


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> dict[str, Any]:
    """Ratio of pooled medians, plus each round's ratio to show how steady it is."""
    return {
        "value": numerator["median_ms"] / denominator["median_ms"],
        "per_round": [
            top / bottom
            for top, bottom in zip(
                numerator["round_medians_ms"], denominator["round_medians_ms"], strict=True
            )
        ],
    }
