"""Interleaved rounds of wrk runs, and the numbers: medians, ratios and the issue's targets.

Why interleaved: on two cores the servers, DynamoDB Local's JVM and wrk share
the CPU, and the machine's speed drifts (a neighbour's burst, the JIT, page
cache). Measuring all of one contender and then all of the next would hand the
drift to whoever ran last; instead every round loads every contender once, and
the one that goes first rotates from round to round.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.http.contenders import BARE_FLASK, DYNAMODB_NEAR, REDIS, SIMPLECACHE, Contender
from benchmarks.http.servers import CATEGORIES_PATH, Served, cache_results, warm_up
from benchmarks.http.waves import DEFAULT_WAVES, run_waves
from benchmarks.http.wrk import WRK_THREADS, run_wrk
from benchmarks.operations import Target
from benchmarks.runner import Progress, rotated
from cache_backends.loader import CacheStatus

#: Five rounds of six seconds: on this 2-core machine one contender's req/s moves by
#: up to 40 % from round to round, and a median of five rides that out better than
#: one of three longer rounds for the same time. A full run takes about four minutes.
DEFAULT_ROUNDS = 5
DEFAULT_DURATION_SECONDS = 6
#: Unmeasured, once per contender: fills caches and pools in every worker, and lets
#: DynamoDB Local's JVM finish compiling its hot paths; with 3 s it was still compiling in
#: the first rounds, on the CPU the next contender needed (near-cache rounds of 1,700
#: req/s instead of 3,000).
DEFAULT_WARMUP_SECONDS = 10
#: Eight per worker: enough to keep two workers busy without queueing for minutes.
DEFAULT_CONNECTIONS = 16
#: The same for every contender; gunicorn.conf.py's own default differs by backend.
DEFAULT_WORKERS = 2
#: Bumped whenever the JSON document changes shape (2: waves).
SCHEMA_VERSION = 2

REQUESTS_PER_SECOND = "requests_per_second"
P50_MS = "p50_ms"
P99_MS = "p99_ms"
METRICS = (REQUESTS_PER_SECOND, P50_MS, P99_MS)
#: The app labels its cache reads with the X-Cache value in lower case.
HIT_RESULT = CacheStatus.HIT.lower()
#: Every contender's req/s is shown as a ratio to each of these.
RATIO_BASELINES = (SIMPLECACHE, REDIS, BARE_FLASK)

#: The acceptance targets: the near-cache's against SimpleCache and Redis, and the app's
#: hits against the bare Flask floor. ``Target.operation`` names the metric.
TARGETS: tuple[Target, ...] = (
    Target(
        operation=REQUESTS_PER_SECOND,
        numerator=DYNAMODB_NEAR,
        denominator=SIMPLECACHE,
        limit=0.9,
        at_most=False,
        description="dynamodb-near req/s >= 0.9x simplecache",
    ),
    Target(
        operation=REQUESTS_PER_SECOND,
        numerator=DYNAMODB_NEAR,
        denominator=REDIS,
        limit=1.0,
        at_most=False,
        description="dynamodb-near req/s >= 1.0x redis",
    ),
    Target(
        operation=P99_MS,
        numerator=DYNAMODB_NEAR,
        denominator=REDIS,
        limit=1.0,
        at_most=True,
        description="dynamodb-near p99 <= redis p99",
    ),
    *(
        Target(
            operation=REQUESTS_PER_SECOND,
            numerator=contender,
            denominator=BARE_FLASK,
            limit=0.8,
            at_most=False,
            description=f"{contender} req/s >= 0.8x bare-flask (the hit at the floor's cost)",
        )
        for contender in (DYNAMODB_NEAR, SIMPLECACHE)
    ),
)


@dataclass(frozen=True)
class LoadSettings:
    """How hard and how long to load each contender; the defaults are ``make bench-http``'s."""

    rounds: int = DEFAULT_ROUNDS
    duration_seconds: int = DEFAULT_DURATION_SECONDS
    warmup_seconds: int = DEFAULT_WARMUP_SECONDS
    connections: int = DEFAULT_CONNECTIONS
    workers: int = DEFAULT_WORKERS
    #: Back-to-back runs of ``duration_seconds`` per contender after the rounds.
    waves: int = DEFAULT_WAVES
    #: GUNICORN_MAX_WORKER_AGE_SECONDS given to the servers; None: as deployed (off).
    max_worker_age_seconds: int | None = None


def run_rounds(
    served: Sequence[Served], wrk: str, settings: LoadSettings, progress: Progress
) -> dict[str, Any]:
    """Warm up and check every contender, measure the rounds, return the result document."""
    started = time.perf_counter()
    progress(f"warm-up: {settings.warmup_seconds}s of load per contender, then one checked GET")
    warm_up(served, wrk, settings.warmup_seconds, settings.connections)
    rounds = []
    for round_index in range(settings.rounds):
        order = rotated(served, round_index)
        results = {item.contender.name: measure(item, wrk, settings, progress) for item in order}
        rounds.append({"order": [item.contender.name for item in order], "results": results})
        progress(f"round {round_index + 1}/{settings.rounds} done")
    waves: dict[str, list[dict[str, Any]]] = {}
    if settings.waves:
        progress(f"waves: {settings.waves} back-to-back runs per contender")
        waves = run_waves(
            served,
            wrk,
            settings.waves,
            settings.duration_seconds,
            settings.connections,
            progress,
        )
    contenders = [item.contender for item in served]
    document = summarize(contenders, settings, rounds, time.perf_counter() - started)
    document["waves"] = waves
    return document


def sustained_document(
    contenders: Sequence[Contender],
    settings: LoadSettings,
    seconds: int,
    slices: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """The ``--sustained`` run's document: its parameters and every slice per contender."""
    return {
        "schema_version": SCHEMA_VERSION,
        "parameters": {
            **asdict(settings),
            "sustained_seconds": seconds,
            "path": CATEGORIES_PATH,
            "wrk_threads": min(WRK_THREADS, settings.connections),
        },
        "contenders": {contender.name: contender.label for contender in contenders},
        "sustained": slices,
    }


def measure(item: Served, wrk: str, settings: LoadSettings, progress: Progress) -> dict[str, Any]:
    """One wrk run, plus the app's own count of cache results during it."""
    before = cache_results(item.url) if item.contender.is_app else None
    result = run_wrk(wrk, item.target, settings.duration_seconds, settings.connections)
    measured: dict[str, Any] = asdict(result)
    if before is not None:
        measured["cache_results"] = dict(cache_results(item.url) - before)
    errors = sum(result.socket_errors.values())
    note = f"; socket errors {result.socket_errors}" if errors else ""
    progress(
        f"  {item.contender.name:<14} {result.requests_per_second:>9.1f} req/s  "
        f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms{note}"
    )
    return measured


def summarize(
    contenders: Sequence[Contender],
    settings: LoadSettings,
    rounds: list[dict[str, Any]],
    measured_seconds: float,
) -> dict[str, Any]:
    """The result document: the JSON on disk, and what the tables and chart are drawn from."""
    per_round = {
        contender.name: {
            metric: [one_round["results"][contender.name][metric] for one_round in rounds]
            for metric in METRICS
        }
        for contender in contenders
    }
    summary = {}
    for contender in contenders:
        series = per_round[contender.name]
        summary[contender.name] = {
            **{metric: statistics.median(values) for metric, values in series.items()},
            "per_round": series,
            "cache_hit_share": _cache_hit_share(rounds, contender),
            "requests_per_second_ratios": {
                baseline: _ratio(series, per_round[baseline], REQUESTS_PER_SECOND)
                for baseline in RATIO_BASELINES
                if baseline in per_round and baseline != contender.name
            },
        }
    targets = [
        target.verdict(
            _ratio(per_round[target.numerator], per_round[target.denominator], target.operation)
        )
        for target in TARGETS
        if target.numerator in per_round and target.denominator in per_round
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "parameters": {
            **asdict(settings),
            "path": CATEGORIES_PATH,
            "wrk_threads": min(WRK_THREADS, settings.connections),
            "interleaving": "every round loads each contender once, back to back; the first "
            "contender rotates each round",
        },
        "contenders": {contender.name: contender.label for contender in contenders},
        "rounds": rounds,
        "summary": summary,
        "targets": targets,
        "all_targets_met": bool(targets) and all(target["met"] for target in targets),
        "measured_seconds": round(measured_seconds, 1),
    }


def _ratio(
    numerator: dict[str, list[float]], denominator: dict[str, list[float]], metric: str
) -> dict[str, Any]:
    """Ratio of the medians over rounds, and each round's own ratio to show the spread."""
    tops, bottoms = numerator[metric], denominator[metric]
    return {
        "value": statistics.median(tops) / statistics.median(bottoms),
        "per_round": [top / bottom for top, bottom in zip(tops, bottoms, strict=True)],
    }


def _cache_hit_share(rounds: list[dict[str, Any]], contender: Contender) -> float | None:
    """Hits among the app's cache reads over all measured runs; None for the bare app."""
    if not contender.is_app:
        return None
    hits = reads = 0
    for one_round in rounds:
        results = one_round["results"][contender.name]["cache_results"]
        hits += results.get(HIT_RESULT, 0)
        reads += sum(results.values())
    return hits / reads if reads else 0.0
