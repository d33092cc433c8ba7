"""VersionedLoader (cache_backends/loader.py) on SimpleCache and DynamoDB, bare and near-cached.

Every race here is forced, never left to timing: loads pause on events and are
released once ``on_event`` (or the test) has seen the other side get where it
must be. Loads are counted by counting calls of the ``load`` callable. The only
sleeps wait out an expiry under test (a lease, a tombstone: about a second each).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from flask_caching.backends.simplecache import SimpleCache

from cache_backends.dynamodb import DynamoDBCache
from cache_backends.loader import CacheStatus, Loaded, LoaderEvent, StaleMark, VersionedLoader
from cache_backends.near import NearCache
from cache_backends.refresher import BackgroundRefresher
from cache_backends.strict import strict_interface
from cache_backends.versioned import Body, VersionedEntry, near_lifetime, store_entry
from devtools.dynamodb_local import DynamoDBLocal
from devtools.ports import free_port
from tests.support.caches import (
    TEST_SIGNING_KEY,
    RaisingCache,
    local_dynamodb_cache,
)
from tests.support.loading import (
    WAIT_SECONDS,
    Events,
    FakeClock,
    Load,
    blocked_until,
    never_called,
    run_threads,
    start_of_a_second,
)

STAMPEDE = 16

HIT, MISS, STALE = CacheStatus.HIT, CacheStatus.MISS, CacheStatus.STALE

#: Longer than any test here: only this process's own writes change what it reads.
NEAR_TTL_SECONDS = 60.0


# -- backends --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dynamodb_cache(dynamodb_local: DynamoDBLocal) -> DynamoDBCache:
    """One table for this module: tests keep apart by using keys of their own."""
    return local_dynamodb_cache(
        dynamodb_local.endpoint_url, f"test-loader-{uuid.uuid4().hex[:12]}", key_prefix="loader:"
    )


@pytest.fixture(params=["simple", "dynamodb", "near-dynamodb"])
def cache(request: pytest.FixtureRequest) -> Any:
    """Flask-Caching's SimpleCache, or DynamoDBCache on DynamoDB Local, bare or behind
    a near-cache: every story must read the same through it (cache_backends.near)."""
    if request.param == "simple":
        return SimpleCache()
    dynamodb_cache = request.getfixturevalue("dynamodb_cache")
    if request.param == "near-dynamodb":
        return NearCache(dynamodb_cache, NEAR_TTL_SECONDS, keep=near_lifetime)
    return dynamodb_cache


@pytest.fixture
def events() -> Events:
    return Events()


MakeLoader = Callable[..., VersionedLoader]


@pytest.fixture
def make_loader(events: Events) -> MakeLoader:
    """A loader of a key no other test uses (TTL 60 s, events recorded) unless told otherwise."""
    key = f"loader-{uuid.uuid4().hex}"

    def make(cache: Any, **options: Any) -> VersionedLoader:
        options.setdefault("ttl", lambda: 60)
        options.setdefault("on_event", events)
        return VersionedLoader(cache, key, **options)

    return make


# -- reads -----------------------------------------------------------------------


def test_first_get_is_a_miss_then_a_hit(cache: Any, make_loader: MakeLoader) -> None:
    """The first get loads once and stores the value; the second one does not load."""
    loader = make_loader(cache)
    load = Load("value", 1)
    assert loader.get(load) == Loaded("value", 1, MISS)
    assert load.calls == 1
    stored = loader.current_entry()
    assert isinstance(stored, VersionedEntry)
    assert (stored.value, stored.version, stored.fence) == ("value", 1, 1)
    assert loader.get(load) == Loaded("value", 1, HIT)
    assert load.calls == 1
    assert cache.get(loader.lease_key) is None, "the lease was released"


@pytest.mark.parametrize("processes", [1, 4], ids=["one-process", "four-processes"])
def test_a_stampede_loads_once(
    cache: Any, make_loader: MakeLoader, events: Events, processes: int
) -> None:
    """16 callers on an empty key: one loads, 15 wait for its value.

    One loader object stands for one process: inside it, threads share one flight;
    across them (four loaders on one key), the lease in the cache decides. The load
    stays paused until all 15 others have reported LEASE_WAITED, so every one of
    them met the key empty and the load under way: none came late to a hit.
    """
    everyone_waits = threading.Event()

    def on_event(event: LoaderEvent) -> None:
        events(event)
        if events.count(LoaderEvent.LEASE_WAITED) == STAMPEDE - 1:
            everyone_waits.set()

    loaders = [make_loader(cache, on_event=on_event, lease_seconds=10) for _ in range(processes)]
    load = Load("value", 1, gate=everyone_waits)
    results: list[Loaded | None] = [None] * STAMPEDE

    def get(index: int) -> None:
        results[index] = loaders[index % processes].get(load)

    run_threads(STAMPEDE, get)
    assert load.calls == 1
    assert {(result.value, result.version) for result in results if result} == {("value", 1)}
    statuses = [result.status for result in results if result]
    assert (statuses.count(MISS), statuses.count(HIT)) == (1, STAMPEDE - 1)
    # A waiting process may still win the lease just after the loader released it; it
    # then finds the value stored (double-checked) and loads nothing: load.calls above.
    assert events.count(LoaderEvent.LEASE_TIMED_OUT) == 0


def test_a_dead_holders_lease_expires_and_a_waiter_takes_it(
    cache: Any, make_loader: MakeLoader, events: Events
) -> None:
    """A holder that died blocks nobody past its lease: the waiter takes the lease and loads.

    The dead lease lasts 1 s, the waiter's patience 2 s: it expires while the waiter
    polls, so the waiter wins it (not a timeout) about 1 s in.
    """
    loader = make_loader(cache, lease_seconds=2)
    start_of_a_second()
    assert cache.add(loader.lease_key, "someone who died", timeout=1)
    load = Load("value", 1)
    started = time.monotonic()
    assert loader.get(load) == Loaded("value", 1, MISS)
    assert time.monotonic() - started < 2
    assert load.calls == 1
    assert events.seen == [LoaderEvent.LEASE_WAITED, LoaderEvent.LEASE_ACQUIRED]
    assert loader.get(load) == Loaded("value", 1, HIT)


def test_a_waiter_whose_wait_runs_out_loads_itself(
    cache: Any, make_loader: MakeLoader, events: Events
) -> None:
    """A lease that outlives the waiter's patience (1 s): LEASE_TIMED_OUT, then its own load.

    (With the dead lease and the patience both 1 s, whether the wait times out or
    the lease expires first is a race; the held-longer lease makes it certain.)
    """
    loader = make_loader(cache, lease_seconds=1)
    assert cache.add(loader.lease_key, "someone slow", timeout=5)
    load = Load("value", 1)
    assert loader.get(load) == Loaded("value", 1, MISS)
    assert load.calls == 1
    assert events.seen == [LoaderEvent.LEASE_WAITED, LoaderEvent.LEASE_TIMED_OUT]
    assert loader.current_entry().value == "value", "its value was stored"
    assert cache.get(loader.lease_key) == "someone slow", "someone else's lease is left alone"
    assert loader.get(load) == Loaded("value", 1, HIT)


def test_a_raising_backend_loads_without_waiting(make_loader: MakeLoader, events: Events) -> None:
    """A backend whose every call raises is no cache: load at once, tell on_error."""
    errors: list[None] = []
    loader = make_loader(RaisingCache(), on_error=lambda: errors.append(None))
    load = Load("value", 1)
    assert loader.get(load) == Loaded("value", 1, MISS)
    assert load.calls == 1
    assert LoaderEvent.LEASE_WAITED not in events.seen
    assert events.seen == []
    assert errors, "on_error was called"


def test_a_dynamodb_outage_does_not_wait_out_the_lease(
    make_loader: MakeLoader, events: Events
) -> None:
    """DynamoDB down: its strict interface raises, so the caller knows nobody can hold
    the lease and loads at once, instead of waiting the 10 s lease out."""
    down = DynamoDBCache(
        "unreachable",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name="us-east-1",
        signing_key=TEST_SIGNING_KEY,
        connect_timeout=0.2,
        read_timeout=0.2,
        max_retries=0,
    )
    loader = make_loader(down, lease_seconds=10)
    load = Load("value", 1)
    started = time.monotonic()
    assert loader.get(load) == Loaded("value", 1, MISS)
    assert load.calls == 1
    assert LoaderEvent.LEASE_TIMED_OUT not in events.seen
    assert time.monotonic() - started < 5


# -- writes ----------------------------------------------------------------------


def test_a_slow_reader_cannot_overwrite_an_invalidation(
    cache: Any, make_loader: MakeLoader, events: Events
) -> None:
    """A load that read version 1 before a write at 2 is answered but not stored."""
    loader = make_loader(cache)
    resume = threading.Event()
    slow = Load("v1", 1, gate=resume)
    result: list[Loaded] = []
    reader = threading.Thread(target=lambda: result.append(loader.get(slow)))
    reader.start()
    assert slow.entered.wait(WAIT_SECONDS), "the reader has read version 1"
    assert loader.invalidate(2) is True
    resume.set()
    reader.join(WAIT_SECONDS)
    assert not reader.is_alive()

    assert result == [Loaded("v1", 1, MISS)], "the reader still gets its own value"
    assert events.count(LoaderEvent.STORE_FENCED) == 1
    assert cache.get(loader.key) == VersionedEntry.tombstone(2)
    fresh = Load("v2", 2)
    assert loader.get(fresh) == Loaded("v2", 2, MISS)
    assert loader.get(fresh) == Loaded("v2", 2, HIT)
    assert fresh.calls == 1


def test_a_get_begun_after_an_invalidation_never_gets_the_older_snapshot(
    cache: Any, make_loader: MakeLoader, events: Events
) -> None:
    """A slow reader has read version 1; invalidate(2) completes; only then does a second
    get begin. The write happened before it began: it must not answer with version 1.

    The second get is let wait (LEASE_WAITED: it joined this process's load under way)
    before the slow reader resumes; it must refuse that older answer and load again.
    """
    waiting = threading.Event()

    def on_event(event: LoaderEvent) -> None:
        events(event)
        if event is LoaderEvent.LEASE_WAITED:
            waiting.set()

    loader = make_loader(cache, on_event=on_event)
    resume = threading.Event()
    slow = Load("v1", 1, gate=resume)
    results: dict[str, Loaded] = {}
    reader = threading.Thread(target=lambda: results.update(reader=loader.get(slow)))
    reader.start()
    assert slow.entered.wait(WAIT_SECONDS)
    assert loader.invalidate(2) is True

    fresh = Load("v2", 2)
    later = threading.Thread(target=lambda: results.update(later=loader.get(fresh)))
    later.start()
    try:
        assert waiting.wait(WAIT_SECONDS), "the later get waits for the load under way"
    finally:
        resume.set()
    reader.join(WAIT_SECONDS)
    later.join(WAIT_SECONDS)
    assert not reader.is_alive() and not later.is_alive()

    assert results["reader"] == Loaded("v1", 1, MISS), "begun before the write: may see 1"
    assert (results["later"].value, results["later"].version) == ("v2", 2)


def test_write_throughs_in_the_wrong_order_keep_the_newer(
    cache: Any, make_loader: MakeLoader, events: Events
) -> None:
    """store(v=3) then store(v=2): the later, older write is refused."""
    loader = make_loader(cache)
    assert loader.store("v3", 3) is True
    assert loader.store("v2", 2) is False
    assert events.seen == [LoaderEvent.STORE_FENCED]
    assert cache.get(loader.key).version == 3
    load = never_called()
    assert loader.get(load) == Loaded("v3", 3, HIT)
    assert load.calls == 0


def test_a_tombstone_outlives_values_that_never_expire(cache: Any, make_loader: MakeLoader) -> None:
    """ttl <= 0 keeps values for ever, so a tombstone must fence them for ever too.

    A reader that read version 1 before invalidate(2) and stores 1.1 s later must
    still be refused; otherwise version 1 stays in the cache, never to expire.
    (The timeout 0 must reach the backend as 0, "never", not become 1 s.)
    """
    loader = make_loader(cache, ttl=lambda: 0)
    resume = threading.Event()
    slow = Load("v1", 1, gate=resume)
    result: list[Loaded] = []
    reader = threading.Thread(target=lambda: result.append(loader.get(slow)))
    reader.start()
    assert slow.entered.wait(WAIT_SECONDS)
    assert loader.invalidate(2) is True
    time.sleep(1.1)  # past the 1 s timeout the tombstone got
    resume.set()
    reader.join(WAIT_SECONDS)
    assert result == [Loaded("v1", 1, MISS)]
    assert cache.get(loader.key) == VersionedEntry.tombstone(2), "version 1 landed for good"


# -- stale-while-revalidate ------------------------------------------------------


def test_stale_while_revalidate(cache: Any, make_loader: MakeLoader, events: Events) -> None:
    """Past the TTL, inside the stale window: 16 gets answer at once with the old value
    while exactly one background refresh runs; past the window, a get blocks and loads.

    The refresh's load stays paused until all 16 gets have returned, so none of them
    waited for it. The fake clock moves the loader's view of time; the backend keeps
    real time, and the loader's timeouts are relative, so entries stay in it.
    """
    clock = FakeClock()
    refresher = BackgroundRefresher(max_workers=1, max_pending=4)
    loader = make_loader(cache, ttl=lambda: 10, stale_seconds=20, refresher=refresher, clock=clock)
    assert loader.store("old", 1)
    clock.advance(15)

    all_returned = threading.Event()
    refresh = Load("new", 2, gate=all_returned)
    results: list[Loaded | None] = [None] * STAMPEDE

    def get(index: int) -> None:
        results[index] = loader.get(refresh)

    try:
        run_threads(STAMPEDE, get)
        assert results == [Loaded("old", 1, STALE)] * STAMPEDE
        assert events.count(LoaderEvent.LEASE_ACQUIRED) == 1, "one refresh was started"
    finally:
        all_returned.set()
        assert refresher.drain(WAIT_SECONDS)
    assert refresh.calls == 1

    unused = never_called()
    assert loader.get(unused) == Loaded("new", 2, HIT)
    assert unused.calls == 0

    clock.advance(31)  # "new" was fresh until +10 and servable until +30
    blocking = Load("newest", 3)
    assert loader.get(blocking) == Loaded("newest", 3, MISS)
    assert blocking.calls == 1
    assert LoaderEvent.REFRESH_DROPPED not in events.seen, "a MISS loads, it queues nothing"


def test_mark_stale_serves_the_value_as_stale_until_a_refresh(
    cache: Any, make_loader: MakeLoader, events: Events
) -> None:
    """mark_stale(2): readers get the old value as STALE (never blocked); loads older than
    2 are fenced; the one refresh stores version 2, which is then a HIT."""
    refresher = BackgroundRefresher()
    loader = make_loader(cache, refresher=refresher)
    assert loader.store("v1", 1)
    assert loader.mark_stale(2) is True

    release = threading.Event()
    refresh = Load("v2", 2, gate=release)
    try:
        assert loader.get(refresh) == Loaded("v1", 1, STALE)
        assert loader.get(refresh) == Loaded("v1", 1, STALE), "the refresh is still running"
        assert loader.store("v1 again", 1) is False, "fenced at 2"
    finally:
        release.set()
        assert refresher.drain(WAIT_SECONDS)
    assert refresh.calls == 1
    assert events.count(LoaderEvent.LEASE_ACQUIRED) == 1

    unused = never_called()
    assert loader.get(unused) == Loaded("v2", 2, HIT)
    assert unused.calls == 0


def test_mark_stale_without_a_value_is_a_tombstone(
    cache: Any, make_loader: MakeLoader, events: Events
) -> None:
    """Nothing cached to keep: mark_stale(2) leaves a tombstone, so the next get is a MISS
    (a load older than 2 is answered, not stored); a load at 2 then makes it a HIT."""
    loader = make_loader(cache)
    assert loader.mark_stale(2) is True
    assert cache.get(loader.key) == VersionedEntry.tombstone(2)

    old = Load("v1", 1)
    assert loader.get(old) == Loaded("v1", 1, MISS)
    assert events.count(LoaderEvent.STORE_FENCED) == 1
    new = Load("v2", 2)
    assert loader.get(new) == Loaded("v2", 2, MISS)
    assert loader.get(new) == Loaded("v2", 2, HIT)
    assert (old.calls, new.calls) == (1, 1)


class PausingCache:
    """A backend whose first ``get`` from the thread named ``thread`` reads, then pauses."""

    def __init__(self, backend: Any, thread: str) -> None:
        self.backend = backend
        self.thread = thread
        self.has_read = threading.Event()
        self.resume = threading.Event()
        self._paused = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def get(self, key: str) -> Any:
        value = self.backend.get(key)
        if threading.current_thread().name == self.thread and not self._paused:
            self._paused = True
            self.has_read.set()
            if not self.resume.wait(WAIT_SECONDS):
                raise TimeoutError("the test never resumed this read")
        return value


class PausingVersionedCache(PausingCache):
    """The same for a backend with set_versioned (declared, so the Protocol sees it)."""

    def set_versioned(self, key: str, value: Any, rank: int, *args: Any, **kwargs: Any) -> bool:
        return self.backend.set_versioned(key, value, rank, *args, **kwargs)


def mark_stale_while_v2_is_stored(cache: Any, make_loader: MakeLoader, version: int) -> Any:
    """Store v1; mark_stale(version) reads it and pauses; v2 is stored; mark_stale resumes.

    Returns the loader once mark_stale has returned.
    """
    strict = strict_interface(cache)
    pausing_class = PausingVersionedCache if hasattr(strict, "set_versioned") else PausingCache
    pausing = pausing_class(strict, thread="marker")
    loader = make_loader(pausing)
    assert loader.store("v1", 1)
    marker = threading.Thread(target=lambda: loader.mark_stale(version), name="marker")
    marker.start()
    assert pausing.has_read.wait(WAIT_SECONDS), "mark_stale has read v1"
    assert loader.store("v2", 2) is True
    pausing.resume.set()
    marker.join(WAIT_SECONDS)
    assert not marker.is_alive(), "mark_stale returned"
    return loader


def test_mark_stale_never_replaces_a_newer_value_stored_meanwhile(
    cache: Any, make_loader: MakeLoader
) -> None:
    """mark_stale(2) has read v1; meanwhile a write-through stores v2. The older v1 must
    not come back (as STALE) over v2: at one version a loaded value outranks a stale mark."""
    loader = mark_stale_while_v2_is_stored(cache, make_loader, version=2)

    current = loader.current_entry()
    assert (current.value, current.version) == ("v2", 2), "the older value came back"
    unused = never_called()
    assert loader.get(unused) == Loaded("v2", 2, HIT)
    assert unused.calls == 0


def test_mark_stale_for_a_newer_write_keeps_the_value_stored_meanwhile(
    cache: Any, make_loader: MakeLoader
) -> None:
    """mark_stale(3) has read v1; meanwhile v2 is stored. Afterwards the cache must hold v2
    marked stale at 3: not v2 fresh (3 was written), and not v1 (older than v2)."""
    loader = mark_stale_while_v2_is_stored(cache, make_loader, version=3)

    current = loader.current_entry()
    assert (current.value, current.version, current.fence) == ("v2", 2, 3)
    assert not current.is_fresh(time.time())


# -- BackgroundRefresher ---------------------------------------------------------


@pytest.mark.parametrize("refusal", ["full", "shut down"])
def test_refresh_in_background_releases_the_lease_when_the_pool_refuses(
    cache: Any, make_loader: MakeLoader, events: Events, refusal: str
) -> None:
    """REFRESH_DROPPED, and the lease is given back at once: a later caller can take it."""
    refresher = BackgroundRefresher(max_workers=1, max_pending=1)
    gate = threading.Event()
    if refusal == "full":
        assert refresher.submit(blocked_until(gate))
    else:
        assert refresher.drain(WAIT_SECONDS)
    loader = make_loader(cache, refresher=refresher)
    load = Load("value", 1)
    try:
        assert loader.refresh_in_background(load) is False
    finally:
        gate.set()
        assert refresher.drain(WAIT_SECONDS)
    assert events.seen == [LoaderEvent.LEASE_ACQUIRED, LoaderEvent.REFRESH_DROPPED]
    assert load.calls == 0
    assert cache.get(loader.lease_key) is None, "the lease was released"

    inline = make_loader(cache)  # no refresher: refreshes inline
    assert inline.refresh_in_background(load) is True, "the lease could be taken again"
    assert load.calls == 1
    assert loader.current_entry().value == "value"


# -- found in review: fences that outlive their window, waits that are bounded -------


def test_a_stale_mark_fences_off_an_older_load_that_lands_after_its_window(
    cache: Any, make_loader: MakeLoader
) -> None:
    """A v1 refresh holds the lease; mark_stale(2) marks the cached v1, which is at the
    end of its life, so the mark's serving window is the lease's (1 s); the window closes
    before the refresh lands. The refresh's store must still be refused."""
    refresher = BackgroundRefresher()
    clock = [1_000.0]
    loader = make_loader(
        cache, lease_seconds=1, ttl=lambda: 300, refresher=refresher, clock=lambda: clock[0]
    )
    gate = threading.Event()
    slow_v1 = Load("v1", 1, gate)
    assert loader.store("v1", 1)
    clock[0] += 299.5  # half a second of v1's life left
    assert loader.refresh_in_background(slow_v1)  # read v1 at its start, and is slow
    assert slow_v1.entered.wait(WAIT_SECONDS)
    assert loader.mark_stale(2)  # a write committed version 2
    time.sleep(1.2)  # past the mark's serving window, in the backend's own time
    clock[0] += 1.2
    gate.set()
    assert refresher.drain(WAIT_SECONDS)

    current = cache.get(loader.key)
    assert current is not None and current.fence == 2, "the fence at 2 is still there"
    assert not current.is_fresh(clock[0]), "v1 did not come back as fresh"
    assert loader.get(Load("v2", 2)) == Loaded("v2", 2, MISS)


def test_a_thread_waits_for_its_process_s_leader_at_most_the_lease(
    cache: Any, make_loader: MakeLoader, events: Events
) -> None:
    """The leader's load hangs; a second thread of the process loads itself after the lease."""
    loader = make_loader(cache, lease_seconds=1)
    gate = threading.Event()
    hung = Load("slow", 1, gate)
    leader = threading.Thread(target=loader.get, args=(hung,))
    leader.start()
    assert hung.entered.wait(WAIT_SECONDS)
    try:
        own = Load("own", 1)
        assert loader.get(own) == Loaded("own", 1, MISS)
        assert own.calls == 1
        assert LoaderEvent.LEASE_TIMED_OUT in events.seen
    finally:
        gate.set()
        leader.join(WAIT_SECONDS)


def test_a_failing_cache_still_loads_once_per_process(
    make_loader: MakeLoader, events: Events
) -> None:
    """An outage must not send every waiting thread of a process to the database."""
    loader = make_loader(RaisingCache())
    gate = threading.Event()
    load = Load("value", 1, gate)
    threads = [threading.Thread(target=loader.get, args=(load,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert load.entered.wait(WAIT_SECONDS)
    deadline = time.monotonic() + WAIT_SECONDS
    while events.seen.count(LoaderEvent.LEASE_WAITED) < 7:  # the others joined the flight
        assert time.monotonic() < deadline, "the other threads never joined"
        time.sleep(0.01)
    gate.set()
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert load.calls == 1


class RefreshedBeforeTheLease:
    """A backend on which another caller's refresh lands just before our lease is taken.

    The first ``add`` of ``lease_key`` runs ``refreshed`` first, as a refresh that
    stored (and released the lease) between our read and our add would.
    """

    def __init__(self, backend: Any, lease_key: str, refreshed: Callable[[], None]) -> None:
        self._backend = backend
        self._lease_key = lease_key
        self._refreshed: Callable[[], None] | None = refreshed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        if key == self._lease_key and self._refreshed is not None:
            refreshed, self._refreshed = self._refreshed, None
            refreshed()
        return self._backend.add(key, value, timeout)


def test_a_stale_read_whose_refresh_another_caller_finished_first_loads_nothing(
    cache: Any, make_loader: MakeLoader
) -> None:
    """Found by the suite: a STALE answer won the lease just after another refresh
    stored and released it, and reloaded. The refresh checks again under the lease."""
    clock = FakeClock()
    plain = make_loader(cache, ttl=lambda: 10, stale_seconds=20, clock=clock)
    assert plain.store("old", 1)
    clock.advance(15)  # past fresh, inside the stale window
    racing = RefreshedBeforeTheLease(
        strict_interface(cache), plain.lease_key, lambda: plain.store("new", 2)
    )
    loader = make_loader(racing, ttl=lambda: 10, stale_seconds=20, clock=clock)
    reload = Load("reloaded", 3)

    assert loader.get(reload) == Loaded("old", 1, STALE)

    assert reload.calls == 0, "the refresh loaded again what was just stored"
    assert loader.get(never_called()) == Loaded("new", 2, HIT)


# -- the pointer and its body ------------------------------------------------------


class CountingReads:
    """A strict interface that records every key read through it."""

    def __init__(self, cache: Any) -> None:
        self._backend = strict_interface(cache)
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def get(self, key: str) -> Any:
        self.reads.append(key)
        return self._backend.get(key)


def test_hits_read_the_small_pointer_and_each_body_once(
    cache: Any, make_loader: MakeLoader
) -> None:
    """The value lives apart from its entry: another process's hits read the pointer,
    and the body only the first time the pointer names it, until a change."""
    writer = make_loader(cache)
    assert writer.get(Load("v1", 1)) == Loaded("v1", 1, MISS)
    counted = CountingReads(cache)
    reader = make_loader(counted)

    for version in (1, 2):
        if version == 2:
            assert writer.store("v2", 2)
        counted.reads.clear()
        for _ in range(3):
            assert reader.get(never_called()) == Loaded(f"v{version}", version, HIT)
        bodies = [key for key in counted.reads if key != reader.key]
        assert counted.reads.count(reader.key) == 3, "a pointer read per hit"
        assert len(bodies) == 1, "the body once per change"


def stored_v1(loader: VersionedLoader) -> VersionedEntry:
    """``loader`` loads and stores v1: the pointer it stored, naming a body."""
    assert loader.get(Load("v1", 1)) == Loaded("v1", 1, MISS)
    pointer = loader.pointer()
    assert pointer is not None and isinstance(pointer.value, Body)
    return pointer


def test_a_pointer_whose_body_is_gone_is_a_miss_loaded_once(
    cache: Any, make_loader: MakeLoader
) -> None:
    """A body evicted, or expired before its pointer, is never served as nothing."""
    body = stored_v1(make_loader(cache)).value
    assert strict_interface(cache).delete(body.key)
    reader, load = make_loader(cache), Load("v1 again", 1)

    assert reader.get(load) == Loaded("v1 again", 1, MISS)
    assert load.calls == 1
    assert reader.get(never_called()) == Loaded("v1 again", 1, HIT)


def test_a_stale_mark_rewrites_the_pointer_and_keeps_the_body(
    cache: Any, make_loader: MakeLoader
) -> None:
    loader = make_loader(cache)
    stored = stored_v1(loader)
    assert loader.stale_mark(2) is StaleMark.MARKED
    marked = loader.pointer()
    assert marked is not None
    assert (marked.value, marked.version, marked.fence) == (stored.value, 1, 2)
    assert make_loader(cache).get(Load("v2", 2)) == Loaded("v1", 1, STALE)


def test_an_entry_holding_its_value_is_still_served(cache: Any, make_loader: MakeLoader) -> None:
    """What a release before pointers stored: the value inside the entry."""
    loader = make_loader(cache)
    now = time.time()
    entry = VersionedEntry("inline", 1, 1, now + 60, now + 60)
    assert store_entry(strict_interface(cache), loader.key, entry, 60)
    assert loader.get(never_called()) == Loaded("inline", 1, HIT)


def test_on_dynamodb_a_hit_costs_one_read_unit_whatever_the_value_s_size(
    dynamodb_cache: DynamoDBCache, dynamodb_local: DynamoDBLocal, make_loader: MakeLoader
) -> None:
    """DynamoDB's own count (ReturnConsumedCapacity) of a strongly consistent read."""
    loader = make_loader(dynamodb_cache)
    assert loader.store(os.urandom(100_000), 1)  # incompressible: 25 read units in one item
    pointer = loader.pointer()
    assert pointer is not None and isinstance(pointer.value, Body)
    client = boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url)

    def read_units(key: str) -> float:
        answer = client.get_item(
            TableName=dynamodb_cache.strict.transport.table_name,
            Key={"cache_key": {"S": dynamodb_cache.key_prefix + key}},
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        assert "Item" in answer, key
        return float(answer["ConsumedCapacity"]["CapacityUnits"])

    assert read_units(loader.key) == 1.0
    assert read_units(pointer.value.key) >= 25.0
