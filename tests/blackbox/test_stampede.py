"""Bursts of concurrent requests against gunicorn: one database load per expiry.

The same scenarios as ``make stampede`` (devtools/stampede.py), on the
session's DynamoDB Local, with the counts asserted. Loads are counted by the
app's own ``ecommerce_db_loads_total`` summed over the workers, so nothing
here depends on timing luck: however the requests interleave, a second load
would show. Without the lease these bursts caused 14-18 loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import stampede
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.app import SEED_CATEGORIES, TOYS
from tests.support.caches import RELAXED_GET_TIMEOUT_SECONDS, RELAXED_WRITE_TIMEOUT_SECONDS

#: Long enough that every request of a burst arrives while the one load runs.
DB_LATENCY_MS = 1000
WORKERS = 4
THREADS = 8
FLEET_BURST = WORKERS * THREADS

pytestmark = pytest.mark.slow


@pytest.fixture
def stage(dynamodb_local: DynamoDBLocal, tmp_path: Path) -> Iterator[stampede.Stage]:
    # Relaxed budgets: a GetItem slower than 0.1 s (or a lease or a store slower than
    # 0.3 s) on this busy machine would make a waiter answer from the database, a second
    # load that is timing, not the lease.
    relaxed = {
        "CACHE_DYNAMODB_GET_TIMEOUT": RELAXED_GET_TIMEOUT_SECONDS,
        "CACHE_DYNAMODB_WRITE_TIMEOUT": RELAXED_WRITE_TIMEOUT_SECONDS,
    }
    yield stampede.Stage(dynamodb_local.endpoint_url, tmp_path, common_settings=relaxed)


def test_a_cold_burst_over_four_workers_loads_once(stage: stampede.Stage) -> None:
    burst = stampede.cold(stage, FLEET_BURST, WORKERS, THREADS, DB_LATENCY_MS)

    assert burst.db_loads == 1
    assert burst.cache_results == {"MISS": 1, "HIT": FLEET_BURST - 1}
    assert all(answer.status == 200 and answer.body == SEED_CATEGORIES for answer in burst.answers)


def test_a_burst_at_ttl_expiry_over_four_workers_loads_once(stage: stampede.Stage) -> None:
    burst = stampede.expiry(stage, FLEET_BURST, WORKERS, THREADS, DB_LATENCY_MS)

    assert burst.db_loads == 1
    assert burst.cache_results == {"MISS": 1, "HIT": FLEET_BURST - 1}


def test_simplecache_in_one_worker_loads_once_for_sixteen_threads(stage: stampede.Stage) -> None:
    burst = stampede.simplecache(stage, 16, DB_LATENCY_MS)

    assert burst.db_loads == 1
    assert burst.cache_results == {"MISS": 1, "HIT": 15}


def test_past_the_ttl_a_burst_is_served_stale_at_once_while_one_load_refreshes(
    stage: stampede.Stage,
) -> None:
    result = stampede.stale(stage, 16, WORKERS, THREADS, DB_LATENCY_MS)

    assert result.burst.cache_results == {"STALE": 16}
    assert result.burst.db_loads == 1
    assert result.next_answer.cache == "HIT"


def test_refresh_async_post_returns_before_the_reload_and_readers_never_wait(
    stage: stampede.Stage,
) -> None:
    result = stampede.writes(stage, "refresh-async", WORKERS, THREADS, DB_LATENCY_MS)

    assert result.post.status == 201
    assert result.get_after.cache in {"STALE", "HIT"}  # never a MISS that waits for the load
    assert result.hit.body == [*SEED_CATEGORIES, TOYS]
    assert result.db_loads == 1
