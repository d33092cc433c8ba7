"""Version-fenced stores (cache_backends/versioned.py) on SimpleCache and DynamoDB Local.

Every store goes through ``store_entry``: an entry never replaces one of a
higher rank (a higher fence, or at one fence a loaded value). DynamoDB does it
in one conditional put (``set_versioned``); other backends get a compare-and-set
under a lock of this process, whose atomicity is proven here by pausing one
thread inside it.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
import uuid
from typing import Any

import boto3
import pytest
from flask_caching.backends.simplecache import SimpleCache

from cache_backends import versioned
from cache_backends.codec import EntryCodec
from cache_backends.dynamodb import DynamoDBCache
from cache_backends.keys import storage_key
from cache_backends.versioned import VersionedEntry, store_entry, timeout_for
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.caches import (
    TEST_SIGNING_KEY,
    RaisingCache,
    local_dynamodb_cache,
)

#: A paused thread that is never resumed must fail the test, not hang it.
WAIT_SECONDS = 10.0
TIMEOUT = 60
#: 2100-01-01: fresh for the whole test run.
FRESH_UNTIL = 4_102_444_800.0


def entry(version: int, value: Any = None, *, fence: int | None = None) -> VersionedEntry:
    """A fresh value read at ``version`` (fenced there unless told otherwise).

    Fixed times, so that two calls with the same arguments compare equal; store_entry
    looks only at the fence and at the timeout it is given.
    """
    return VersionedEntry(
        f"value@{version}" if value is None else value,
        version,
        version if fence is None else fence,
        FRESH_UNTIL,
        FRESH_UNTIL + 30,
    )


def new_key() -> str:
    return f"versioned-{uuid.uuid4().hex}"


# -- backends ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dynamodb_table(dynamodb_local: DynamoDBLocal) -> str:
    """One table for this module: tests keep apart by using keys of their own."""
    name = f"test-versioned-{uuid.uuid4().hex[:12]}"
    local_dynamodb_cache(dynamodb_local.endpoint_url, name)
    return name


@pytest.fixture(scope="module")
def dynamodb_cache(dynamodb_local: DynamoDBLocal, dynamodb_table: str) -> DynamoDBCache:
    return make_dynamodb_cache(dynamodb_local, dynamodb_table)


def make_dynamodb_cache(dynamodb_local: DynamoDBLocal, table: str) -> DynamoDBCache:
    """A backend on ``table``: a second call stands for a second instance of the app."""
    return local_dynamodb_cache(
        dynamodb_local.endpoint_url, table, create_table=False, key_prefix="versioned:"
    )


@pytest.fixture(params=["simple", "dynamodb"])
def cache(request: pytest.FixtureRequest) -> Any:
    """Flask-Caching's SimpleCache (the CAS path) or DynamoDBCache (set_versioned)."""
    if request.param == "simple":
        return SimpleCache()
    return request.getfixturevalue("dynamodb_cache")


def put_expired(cache: Any, request: pytest.FixtureRequest, key: str, item: Any) -> None:
    """Leave ``item`` under ``key`` already expired but not yet deleted, without sleeping."""
    if isinstance(cache, SimpleCache):
        cache._cache[key] = (int(time.time()) - 60, cache.serializer.dumps(item))
        return
    # As tests/dynamodb/'s put_signed: a correctly signed item, written raw,
    # whose expiry is a minute ago; DynamoDB's TTL sweeper has not removed it yet.
    dynamodb_local: DynamoDBLocal = request.getfixturevalue("dynamodb_local")
    table = boto3.resource("dynamodb", endpoint_url=dynamodb_local.endpoint_url).Table(
        request.getfixturevalue("dynamodb_table")
    )
    skey = storage_key(cache.key_prefix, key)
    expires_ms = int(time.time() * 1000) - 60_000
    table.put_item(
        Item={
            "cache_key": skey,
            "value": EntryCodec(TEST_SIGNING_KEY).seal(skey, pickle.dumps(item), expires_ms),
            "expires_ms": expires_ms,
            "expires_at": expires_ms // 1000 + 1,
            "version": item.rank,  # what set_versioned compares
            "key_prefix": cache.key_prefix,
        }
    )


# -- the fence rule, on both backends -------------------------------------------


def test_store_into_an_empty_key(cache: Any) -> None:
    """An absent key takes any entry."""
    key = new_key()
    stored = entry(1)
    assert store_entry(cache, key, stored, TIMEOUT) is True
    assert cache.get(key) == stored


def test_a_lower_fence_is_refused_and_the_stored_entry_unchanged(cache: Any) -> None:
    """An older snapshot arriving late never replaces a newer one."""
    key = new_key()
    newer = entry(5)
    assert store_entry(cache, key, newer, TIMEOUT)
    assert store_entry(cache, key, entry(4), TIMEOUT) is False
    assert cache.get(key) == newer


def test_equal_and_higher_fences_replace(cache: Any) -> None:
    """Equal fences describe the same database: either may land; a higher one always does."""
    key = new_key()
    assert store_entry(cache, key, entry(5, "first"), TIMEOUT)
    same_version = entry(5, "second")
    assert store_entry(cache, key, same_version, TIMEOUT) is True
    assert cache.get(key) == same_version
    higher = entry(6)
    assert store_entry(cache, key, higher, TIMEOUT) is True
    assert cache.get(key) == higher


def test_a_tombstone_blocks_a_lower_version(cache: Any) -> None:
    """An invalidation remembers its version: a slow reader's older load cannot land after it."""
    key = new_key()
    tombstone = VersionedEntry.tombstone(3)
    assert store_entry(cache, key, entry(2), TIMEOUT)
    assert store_entry(cache, key, tombstone, TIMEOUT) is True
    assert store_entry(cache, key, entry(2), TIMEOUT) is False
    assert cache.get(key) == tombstone
    reloaded = entry(3)
    assert store_entry(cache, key, reloaded, TIMEOUT) is True, "a load at the new version lands"
    assert cache.get(key) == reloaded


def test_the_fence_not_the_version_decides(cache: Any) -> None:
    """A value marked stale by a newer write (fence > version) refuses loads older than it."""
    key = new_key()
    marked = entry(1, fence=4)
    assert store_entry(cache, key, marked, TIMEOUT)
    assert store_entry(cache, key, entry(3), TIMEOUT) is False
    assert cache.get(key) == marked
    assert store_entry(cache, key, entry(4), TIMEOUT) is True


def test_at_one_version_a_loaded_value_outranks_a_tombstone_or_a_stale_mark(cache: Any) -> None:
    """A tombstone or stale mark at version 3 only says "a value of 3 is due": it must not
    replace a value loaded at 3 that got there first, and a value loaded at 3 replaces it."""
    key = new_key()
    loaded = entry(3)
    assert store_entry(cache, key, loaded, TIMEOUT)
    assert store_entry(cache, key, VersionedEntry.tombstone(3), TIMEOUT) is False
    assert store_entry(cache, key, entry(2, fence=3), TIMEOUT) is False, "a stale mark at 3"
    assert cache.get(key) == loaded
    assert store_entry(cache, key, VersionedEntry.tombstone(4), TIMEOUT) is True


def test_rank() -> None:
    """What stores compare: 2 x fence, +1 for a value loaded at its fence."""
    assert entry(3).rank == 7
    assert VersionedEntry.tombstone(3).rank == 6
    assert entry(2, fence=3).rank == 6, "a value of 2 marked stale by a write at 3"
    assert entry(2).rank < VersionedEntry.tombstone(3).rank < entry(3).rank


def test_a_plain_set_value_is_replaced(cache: Any) -> None:
    """A key written by plain ``set`` (no version; on DynamoDB no version attribute) is replaced."""
    key = new_key()
    assert cache.set(key, "written by plain set", timeout=TIMEOUT)
    stored = entry(1)
    assert store_entry(cache, key, stored, TIMEOUT) is True
    assert cache.get(key) == stored


def test_an_expired_entry_of_a_higher_version_is_replaced(
    cache: Any, request: pytest.FixtureRequest
) -> None:
    """Only a live entry fences: an expired one, not yet deleted, no longer counts."""
    key = new_key()
    put_expired(cache, request, key, entry(99))
    assert cache.get(key) is None, "expired: a miss already"
    stored = entry(1)
    assert store_entry(cache, key, stored, TIMEOUT) is True
    assert cache.get(key) == stored


def test_backend_errors_propagate() -> None:
    """store_entry does not swallow a failing backend: the caller decides how to degrade."""
    with pytest.raises(ConnectionError):
        store_entry(RaisingCache(), new_key(), entry(1), TIMEOUT)


# -- DynamoDB: the native conditional put -----------------------------------------


def test_dynamodb_uses_its_conditional_put(dynamodb_cache: DynamoDBCache) -> None:
    """DynamoDBCache takes the set_versioned path, never the process lock."""
    assert isinstance(dynamodb_cache, versioned.SupportsVersionedSet)
    assert not isinstance(SimpleCache(), versioned.SupportsVersionedSet)
    key = new_key()
    assert store_entry(dynamodb_cache, key, entry(2), TIMEOUT)
    assert dynamodb_cache not in versioned._locks


def test_set_versioned_replaces_an_item_without_a_version_attribute(
    dynamodb_cache: DynamoDBCache,
) -> None:
    """Even one holding a VersionedEntry: only the item's version attribute is compared."""
    key = new_key()
    assert dynamodb_cache.set(key, entry(50), timeout=TIMEOUT)
    stored = entry(1)
    assert dynamodb_cache.set_versioned(key, stored, 1, TIMEOUT) is True
    assert dynamodb_cache.get(key) == stored
    assert dynamodb_cache.set_versioned(key, entry(0), 0, TIMEOUT) is False, "now it has one"


def test_set_versioned_holds_across_instances(
    dynamodb_local: DynamoDBLocal, dynamodb_table: str
) -> None:
    """Two app instances (no lock in common): the higher version wins in either order."""
    first = make_dynamodb_cache(dynamodb_local, dynamodb_table)
    second = make_dynamodb_cache(dynamodb_local, dynamodb_table)
    newer_first, older_first = new_key(), new_key()
    assert store_entry(first, newer_first, entry(7), TIMEOUT)
    assert store_entry(second, newer_first, entry(6), TIMEOUT) is False
    assert store_entry(second, older_first, entry(6), TIMEOUT)
    assert store_entry(first, older_first, entry(7), TIMEOUT) is True
    assert second.get(newer_first) == first.get(older_first) == entry(7)


def test_set_versioned_keeps_the_highest_of_concurrent_writers(
    dynamodb_local: DynamoDBLocal, dynamodb_table: str
) -> None:
    """16 writers on 2 instances, released at once: whatever the order, the highest remains."""
    instances = [make_dynamodb_cache(dynamodb_local, dynamodb_table) for _ in range(2)]
    key = new_key()
    start = threading.Barrier(16)
    results: dict[int, bool] = {}

    def write(version: int) -> None:
        start.wait(WAIT_SECONDS)
        results[version] = store_entry(instances[version % 2], key, entry(version), TIMEOUT)

    threads = [threading.Thread(target=write, args=(version,)) for version in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert results[15] is True, "nothing can fence the highest version"
    assert instances[0].get(key) == entry(15)


# -- other backends: compare-and-set under a process lock -------------------------


class SpyLock:
    """A lock that reports each thread that tries to take it, before it blocks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: list[str] = []
        self._changed = threading.Condition()

    def __enter__(self) -> SpyLock:
        with self._changed:
            self._attempts.append(threading.current_thread().name)
            self._changed.notify_all()
        self._lock.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def wait_for_attempts(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._attempts) >= count, WAIT_SECONDS)


class SlowReadCache(SimpleCache):
    """SimpleCache whose ``get`` from thread "A" reads, then pauses before answering.

    A slow round trip: the answer is what the key held when the read was made.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a_has_read = threading.Event()
        self.resume_a = threading.Event()
        self.reads: list[tuple[str, Any]] = []

    def get(self, key: str) -> Any:
        value = super().get(key)
        name = threading.current_thread().name
        self.reads.append((name, value))
        if name == "A":
            self.a_has_read.set()
            assert self.resume_a.wait(WAIT_SECONDS), "never resumed"
        return value


@pytest.mark.parametrize(("a_version", "b_version"), [(1, 2), (2, 1)], ids=["A-older", "A-newer"])
def test_the_compare_and_set_is_atomic(
    monkeypatch: pytest.MonkeyPatch, a_version: int, b_version: int
) -> None:
    """A is paused inside its CAS (read done, write not); B's store must wait for the lock.

    Without the lock, B would read the empty key and store, and A would then write over
    it on the strength of its old read: with A older, version 1 would be left. With it,
    B waits, reads A's entry, and the higher version is what remains in both orders.
    """
    cache = SlowReadCache()
    lock = SpyLock()
    monkeypatch.setitem(versioned._locks, cache, lock)
    key = new_key()
    results: dict[str, bool] = {}

    def store(version: int) -> None:
        name = threading.current_thread().name
        results[name] = store_entry(cache, key, entry(version), TIMEOUT)

    thread_a = threading.Thread(target=store, args=(a_version,), name="A")
    thread_b = threading.Thread(target=store, args=(b_version,), name="B")
    thread_a.start()
    assert cache.a_has_read.wait(WAIT_SECONDS)
    thread_b.start()
    assert lock.wait_for_attempts(2), "B never tried to take the lock"
    # B is at the lock (or blocked in it) while A, which holds it, is paused.
    assert lock.locked()
    assert [name for name, _ in cache.reads] == ["A"], "B must not read inside A's CAS"
    cache.resume_a.set()
    thread_a.join(WAIT_SECONDS)
    thread_b.join(WAIT_SECONDS)
    assert not thread_a.is_alive() and not thread_b.is_alive()

    assert cache.reads == [("A", None), ("B", entry(a_version))], "B read what A wrote"
    assert results == {"A": True, "B": b_version > a_version}
    assert cache.get(key) == entry(2)


def test_each_cache_object_has_its_own_lock() -> None:
    """Two SimpleCaches never wait for each other; one cache always gets the same lock."""
    first, second = SimpleCache(), SimpleCache()
    assert versioned._lock_for(first) is versioned._lock_for(first)
    assert versioned._lock_for(first) is not versioned._lock_for(second)


# -- timeout_for ------------------------------------------------------------------


def _timed(fresh_until: float, serve_stale_until: float) -> VersionedEntry:
    return VersionedEntry("v", 1, 1, fresh_until, serve_stale_until)


@pytest.mark.parametrize(
    ("fresh_in", "stale_in", "expected"),
    [
        (10.0, 30.0, 30),  # kept until the stale window ends
        (10.0, 0.0, 10),  # the later of the two: fresh outlasts an absent stale window
        (1.2, 1.2, 2),  # rounded up: never expires before it may no longer be served
        (5.0, 5.0, 5),  # whole seconds stay as they are
        (0.2, 0.2, 1),  # at least 1: 0 would mean "never expire"
        (-5.0, -5.0, 1),  # already past: still 1, not 0 or negative
        (math.inf, math.inf, 0),  # fresh for ever: 0, never expire
        (10.0, math.inf, 0),
    ],
)
def test_timeout_for(fresh_in: float, stale_in: float, expected: int) -> None:
    """Whole seconds until the entry may no longer be served: rounded up, >= 1, 0 = forever."""
    now = 1_700_000_000.0
    assert timeout_for(_timed(now + fresh_in, now + stale_in), now) == expected


def test_timeout_for_a_tombstone_is_one_second() -> None:
    """A tombstone (fresh_until 0) gets the minimum; callers pass the life it needs."""
    assert timeout_for(VersionedEntry.tombstone(3), time.time()) == 1
