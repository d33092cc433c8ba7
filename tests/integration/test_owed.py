"""cache_backends/owed.py: a cache update that did not land is owed, retried, never lost silently.

The cache fails on demand (``FlakyCache``: SimpleCache that raises CacheUnavailable
while told to) or is a real DynamoDBCache on DynamoDB Local; interleavings are forced
with events on botocore's own hooks, never left to timing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import boto3
import pytest

from cache_backends.dynamodb import DynamoDBCache
from cache_backends.loader import CacheStatus, Loaded, VersionedLoader
from cache_backends.owed import MAX_RETRY_SECONDS, RETRY_JITTER_FRACTION, OwedOutcome, OwedUpdates
from cache_backends.region import NewestVersion, Region, Strategy
from cache_backends.strict import CacheUnavailable, on_recovery, request_path
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.caches import (
    FlakyCache,
    local_dynamodb_cache,
)
from tests.support.loading import WAIT_SECONDS, FakeClock

KEY = "prices"
#: Long enough that a retry in a test can only come from wake(), never from the backoff.
NEVER_BY_BACKOFF_SECONDS = 3600.0


class Outcomes:
    """``on_outcome`` recorder."""

    def __init__(self) -> None:
        self.seen: list[OwedOutcome] = []
        self._lock = threading.Lock()

    def __call__(self, key: str, outcome: OwedOutcome) -> None:
        with self._lock:
            self.seen.append(outcome)


def loader_on(cache: Any) -> VersionedLoader:
    return VersionedLoader(cache, KEY, ttl=lambda: 60)


def owed_write_through(
    loader: VersionedLoader, owed: OwedUpdates, value: Any, version: int
) -> None:
    """What the write path does: try the update; owe it if the cache could not be asked."""

    def apply() -> bool:
        return loader.store(value, version, strict=True)

    try:
        apply()
    except CacheUnavailable as error:
        owed.owe(KEY, version, apply, reason=error)


def test_a_failed_update_is_owed_retried_and_lands_once_the_cache_answers() -> None:
    cache, outcomes = FlakyCache(), Outcomes()
    loader = loader_on(cache)
    owed = OwedUpdates(on_outcome=outcomes, background=False)
    cache.failing = True

    owed_write_through(loader, owed, "v2", 2)

    assert owed.pending() == {KEY: 2}
    assert owed.retry_due(everything=True) == 1, "still failing: still owed"
    cache.failing = False
    assert owed.retry_due(everything=True) == 0
    entry = loader.current_entry()
    assert entry is not None and (entry.value, entry.version) == ("v2", 2)
    assert outcomes.seen == [OwedOutcome.OWED, OwedOutcome.RETRY_FAILED, OwedOutcome.LANDED]


def test_an_owed_update_retried_after_a_newer_write_landed_elsewhere_cannot_win() -> None:
    """Version N is owed here; another process stores N+1; N's retry then runs and is refused."""
    cache, outcomes = FlakyCache(), Outcomes()
    here, other_process = loader_on(cache), loader_on(cache)
    owed = OwedUpdates(on_outcome=outcomes, background=False)
    cache.failing = True
    owed_write_through(here, owed, "v5", 5)
    cache.failing = False

    assert other_process.store("v6", 6, strict=True)
    assert owed.retry_due(everything=True) == 0

    entry = here.current_entry()
    assert entry is not None and (entry.value, entry.version) == ("v6", 6)
    assert outcomes.seen == [OwedOutcome.OWED, OwedOutcome.FENCED]


def test_the_loader_serves_no_entry_older_than_what_this_process_owes() -> None:
    """The cache answers again before the owed tombstone landed: its old list is not a HIT."""
    cache = FlakyCache()
    owed = OwedUpdates(background=False)
    newest = NewestVersion(owed=owed, key=KEY, database_version=lambda: 0, hold_seconds=6)
    loader = VersionedLoader(cache, KEY, ttl=lambda: 60, newest=newest)
    assert loader.store("v1", 1)
    cache.failing = True
    owed_write_through(loader, owed, "v2", 2)
    cache.failing = False

    loaded = loader.get(lambda: ("v2 from the database", 2))

    assert (loaded.value, loaded.status) == ("v2 from the database", CacheStatus.MISS)
    assert owed.retry_due(everything=True) == 0  # the load stored v2 first: fenced or landed


def test_a_newer_debt_supersedes_an_older_one_and_an_older_one_never_replaces_it() -> None:
    owed, outcomes = OwedUpdates(on_outcome=Outcomes(), background=False), Outcomes()
    owed.on_outcome = outcomes
    applied: list[int] = []

    def apply_at(version: int) -> Any:
        return lambda: applied.append(version) or True

    owed.owe(KEY, 3, apply_at(3))
    owed.owe(KEY, 4, apply_at(4))  # newer: replaces 3
    owed.owe(KEY, 2, apply_at(2))  # older, late: dropped at once
    assert owed.pending() == {KEY: 4}
    owed.retry_due(everything=True)

    assert applied == [4]
    assert outcomes.seen == [
        OwedOutcome.OWED,
        OwedOutcome.SUPERSEDED,
        OwedOutcome.OWED,
        OwedOutcome.SUPERSEDED,
        OwedOutcome.LANDED,
    ]


def test_a_newer_write_that_landed_settles_the_older_debt() -> None:
    owed, outcomes = OwedUpdates(background=False), Outcomes()
    owed.on_outcome = outcomes
    owed.owe(KEY, 3, lambda: True)

    owed.settle(KEY, 2)  # older than the debt: it stays
    assert owed.pending() == {KEY: 3}
    owed.settle(KEY, 4)

    assert owed.pending() == {}
    assert outcomes.seen == [OwedOutcome.OWED, OwedOutcome.SUPERSEDED]


def test_the_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    clock = FakeClock()
    owed = OwedUpdates(background=False, first_retry=1.0, max_retry=MAX_RETRY_SECONDS, clock=clock)

    def failing() -> bool:
        raise CacheUnavailable("down (test)")

    owed.owe(KEY, 1, failing)
    waits = []
    for _ in range(6):
        owed.retry_due(everything=True)
        waits.append(owed._debts[KEY].due - clock.now)
    for attempt, wait in enumerate(waits, start=1):
        backoff = min(MAX_RETRY_SECONDS, 2.0**attempt)
        assert backoff * (1 - RETRY_JITTER_FRACTION) <= wait <= backoff
    assert max(waits) <= MAX_RETRY_SECONDS


def test_drain_makes_a_last_attempt_then_abandons_loudly(caplog: pytest.LogCaptureFixture) -> None:
    cache, outcomes = FlakyCache(), Outcomes()
    owed = OwedUpdates(on_outcome=outcomes, background=False)
    cache.failing = True
    owed_write_through(loader_on(cache), owed, "v7", 7)

    with caplog.at_level(logging.WARNING, logger="cache_backends.owed"):
        left = owed.drain(timeout=1.0)

    assert left == {KEY: 7}
    assert owed.pending() == {}
    assert outcomes.seen[-2:] == [OwedOutcome.RETRY_FAILED, OwedOutcome.ABANDONED]
    assert any("left to the reconciler" in record.getMessage() for record in caplog.records)


def test_the_retry_thread_starts_with_the_first_debt_and_stops_at_drain() -> None:
    owed = OwedUpdates(first_retry=NEVER_BY_BACKOFF_SECONDS)
    assert not owed.running, "nothing owed: no thread"
    landed = threading.Event()

    owed.owe(KEY, 1, lambda: landed.set() or True)
    owed.wake()

    assert landed.wait(WAIT_SECONDS), "wake() retried on the thread, not at the backoff"
    assert owed.running
    owed.drain(timeout=1.0)
    assert not owed.running


# --- on DynamoDB Local: the breaker's first good probe, and a paused retry -------------


@pytest.fixture
def dynamodb_cache(dynamodb_local: DynamoDBLocal, table_name: str) -> DynamoDBCache:
    return local_dynamodb_cache(
        dynamodb_local.endpoint_url,
        table_name,
        breaker_failures=1,  # one failure opens the circuit
        breaker_cooldown=NEVER_BY_BACKOFF_SECONDS,  # until the test shortens it
    )


def test_the_breakers_first_good_probe_retries_what_is_owed_at_once(
    dynamodb_cache: DynamoDBCache,
) -> None:
    """Skipped while the circuit is open, owed; landed right after the probe closes it.

    The backoff is an hour, so only the breaker's close listener can make it land.
    """
    loader = loader_on(dynamodb_cache)
    owed = OwedUpdates(first_retry=NEVER_BY_BACKOFF_SECONDS, max_retry=NEVER_BY_BACKOFF_SECONDS)
    assert on_recovery(dynamodb_cache, owed.wake)
    breaker = dynamodb_cache.strict.transport.breaker
    breaker.record_failure(0.0)  # a failed call (a stand-in for a partition) opens it
    landed = threading.Event()

    def apply() -> bool:
        stored = loader.invalidate(8, strict=True)
        landed.set()
        return stored

    with pytest.raises(CacheUnavailable, match="circuit open"):
        apply()
    landed.clear()
    owed.owe(KEY, 8, apply)
    breaker.cooldown = 0.0  # the cool-down is over: the next call is the probe

    assert dynamodb_cache.get("anything") is None  # the probe: it succeeds, the circuit closes

    assert landed.wait(WAIT_SECONDS)
    owed.drain(timeout=WAIT_SECONDS)
    entry = loader.current_entry()
    assert entry is not None and (entry.has_value, entry.fence) == (False, 8)


def test_an_owed_retry_paused_on_the_wire_loses_to_a_newer_write(
    dynamodb_cache: DynamoDBCache,
) -> None:
    """The retry of N has built its conditional PutItem and is held before sending it; a
    write of N+1 lands (on the request path's own client); the retry, released, is refused.
    """
    here, other = loader_on(dynamodb_cache), loader_on(dynamodb_cache)
    patient_client = dynamodb_cache.strict.transport.clients()[0]
    retry_on_the_wire, release = threading.Event(), threading.Event()

    def hold_the_retry(**_: Any) -> None:
        if threading.current_thread().name == "retry":
            retry_on_the_wire.set()
            assert release.wait(WAIT_SECONDS)

    patient_client.meta.events.register("before-send.dynamodb.PutItem", hold_the_retry)
    outcomes = Outcomes()
    owed = OwedUpdates(on_outcome=outcomes, background=False)
    owed.owe(KEY, 4, lambda: here.store("v4", 4, strict=True))
    retry = threading.Thread(target=owed.retry_due, kwargs={"everything": True}, name="retry")
    retry.start()
    assert retry_on_the_wire.wait(WAIT_SECONDS)

    with request_path():  # the newer write, as a request makes it
        assert other.store("v5", 5, strict=True)
    release.set()
    retry.join(WAIT_SECONDS)

    assert outcomes.seen == [OwedOutcome.OWED, OwedOutcome.FENCED]
    entry = here.current_entry()
    assert entry is not None and (entry.value, entry.version) == ("v5", 5)


def test_an_owed_write_through_never_lands_an_older_list_in_a_table_created_again(
    dynamodb_cache: DynamoDBCache, dynamodb_local: DynamoDBLocal
) -> None:
    """DynamoDB Local restarted empty: the write-through of version 2 finds no table and is
    owed (the circuit opens); this process then serves version 3 (another instance's
    change, loaded); the table is created again, empty. Nothing in it fences the retry, so
    the retry itself must not store the list at 2, which every process that has not seen 3
    would serve as a HIT: it reads the list back again. Fails without it: 'v2' is cached."""
    database = {"version": 1}

    def load() -> tuple[str, int]:
        return f"v{database['version']}", database["version"]

    region = Region(
        dynamodb_cache,
        KEY,
        load=load,
        database_version=lambda: database["version"],
        strategy=Strategy.WRITE_THROUGH,
        ttl=60,
        stale_if_error=0,  # a read the cache fails is loaded
        reconcile_seconds=0,
    )
    region.owed.background = False
    assert region.get().status is CacheStatus.MISS
    boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url).delete_table(
        TableName=dynamodb_cache.table_name
    )
    database["version"] = 2
    region.after_write(2)
    assert region.owed.pending() == {KEY: 2}
    database["version"] = 3  # another instance's change
    assert region.get() == Loaded("v3", 3, CacheStatus.MISS)  # the circuit is open: loaded
    dynamodb_cache.create_table()  # empty (or already created again in the background)
    dynamodb_cache.strict.transport.breaker.cooldown = 0.0  # the retry is the probe

    try:
        assert region.owed.retry_due(everything=True) == 0
        entry = region.current_entry()
    finally:
        region.stop()

    assert entry is not None and (entry.value, entry.version) == ("v3", 3), entry
