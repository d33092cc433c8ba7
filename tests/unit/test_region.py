"""cache_backends/region.py without DynamoDB or a database: NewestVersion on a clock the
tests step, and the region over a cache that fails on demand (the app's own paths are
tested in tests/integration, the deployed fleet in tests/blackbox).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask_caching.backends.simplecache import SimpleCache

from cache_backends import signals
from cache_backends.loader import CacheStatus, Loaded, LoaderEvent
from cache_backends.near import NearCache
from cache_backends.owed import OwedUpdates
from cache_backends.region import NewestVersion, Region, Strategy
from cache_backends.versioned import VersionedEntry
from tests.support.caches import FlakyCache
from tests.support.loading import WAIT_SECONDS, FakeClock

KEY = "prices"


def newest_version(
    database_version: object = lambda: 0, clock: FakeClock | None = None
) -> NewestVersion:
    return NewestVersion(
        owed=OwedUpdates(background=False),
        key=KEY,
        database_version=database_version,  # type: ignore[arg-type]
        hold_seconds=6,
        clock=clock or FakeClock(),
    )


def test_after_a_recovery_the_next_read_asks_the_database_once_and_holds_its_version() -> None:
    """Another process's write may have failed during this one's outage:
    tests/blackbox/test_coherence.py shows the old list coming back as a HIT without this."""
    database_reads: list[int] = []

    def database_version() -> int:
        database_reads.append(7)
        return 7

    clock = FakeClock()
    newest = newest_version(database_version, clock)
    assert newest.known() == 0 and database_reads == []  # no outage: no query

    newest.cache_recovered()
    assert [newest.known(), newest.known(), newest.served()] == [7, 7, 7]
    assert database_reads == [7]  # once per recovery, not per read
    clock.advance(6.0)
    assert newest.known() == 0  # held for a while only: a restored database must not load for ever


def test_a_failing_database_read_after_a_recovery_is_tried_again_on_the_next_read() -> None:
    answers: list[int | Exception] = [RuntimeError("database down"), 4]

    def database_version() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    newest = newest_version(database_version)
    newest.cache_recovered()

    assert newest.known() == 0
    assert newest.known() == 4


def test_a_write_this_process_owes_is_known_until_it_lands() -> None:
    newest = newest_version()
    newest.owed.owe(KEY, 5, lambda: True)
    assert newest.known() == 5
    newest.owed.settle(KEY, 5)
    assert newest.known() == 0


def test_a_cache_found_behind_and_not_repaired_is_known_for_a_while_only() -> None:
    clock = FakeClock()
    newest = newest_version(clock=clock)
    newest.cache_behind(5)
    newest.cache_behind(4)  # an older reconcile's finding does not lower it
    assert newest.known() == 5
    clock.advance(6.0)
    assert newest.known() == 0  # by then repaired, or the circuit closed and read the database


def test_what_was_served_is_never_served_older_unless_the_database_went_back() -> None:
    """Reads never go back in time, but a database restored to an older version is the truth."""
    clock = FakeClock()
    newest = newest_version(clock=clock)
    newest.saw(9)
    newest.saw(4)  # an older answer does not lower it
    assert newest.served() == 9

    started_before = clock.now
    clock.advance(1.0)
    newest.loaded(8, started=started_before)  # a load older than the floor: a slow snapshot
    assert newest.served() == 9
    newest.loaded(12, started=clock.now)  # loaded, not shown yet (a background refresh)
    assert newest.served() == 9

    clock.advance(1.0)
    newest.loaded(3, started=clock.now)  # began after 9 was served, answers 3: restored
    assert newest.served() == 3


# -- the region over a cache that fails on demand ------------------------------------


class Catalogue:
    """The database: a list and its version; a load can be held mid-way (a slow query)."""

    def __init__(self) -> None:
        self.version = 1
        self.hold_loads = False
        self.load_held = threading.Event()
        self.release_load = threading.Event()
        self.loads = 0

    def write(self) -> int:
        self.version += 1
        return self.version

    def load(self) -> tuple[str, int]:
        self.loads += 1
        value, version = f"list at {self.version}", self.version  # read first, then wait
        if self.hold_loads:
            self.load_held.set()
            assert self.release_load.wait(WAIT_SECONDS), "the held load was never released"
        return value, version


def region_on(
    cache: FlakyCache, catalogue: Catalogue, strategy: Strategy, **options: Any
) -> Region:
    """A region over ``catalogue`` whose owed updates are retried when the test says."""
    region = Region(
        cache,
        KEY,
        load=catalogue.load,
        database_version=lambda: catalogue.version,
        strategy=strategy,
        ttl=300,
        lease_seconds=5,
        reconcile_seconds=2,
        **options,
    )
    region.owed.background = False
    return region


def refresh_async_region(cache: FlakyCache, catalogue: Catalogue) -> Region:
    return region_on(cache, catalogue, Strategy.REFRESH_ASYNC)


def test_a_stale_mark_landing_after_an_outage_never_brings_back_an_older_list() -> None:
    """The randomized fault run's bug: after an outage longer than the breaker's cool-down,
    the owed stale mark lands on the value the outage left behind (v1, fenced at v3). The
    process served v3 during the outage (loaded from the database), so v1 must not come
    back as STALE while the refresh runs: the reader waits for the refresh instead.

    Forced: the refresh's load is held until the reader is seen waiting for its lease.
    Without NewestVersion.served the reader answers STALE "list at 1" at once."""
    cache, catalogue = FlakyCache(), Catalogue()
    region = refresh_async_region(cache, catalogue)
    assert region.get().status is CacheStatus.MISS  # v1 cached

    cache.failing = True  # the outage: writes are owed, reads go to the database
    for _ in range(2):
        region.after_write(catalogue.write())
        assert region.get().value == f"list at {catalogue.version}"
    assert region.owed.pending() == {KEY: 3}

    catalogue.hold_loads = True  # the refresh the owed mark starts is slow
    cache.heal()
    assert region.owed.retry_due(everything=True) == 0  # the stale mark lands on v1
    assert catalogue.load_held.wait(WAIT_SECONDS)
    entry = region.current_entry()
    assert entry is not None and (entry.value, entry.fence) == ("list at 1", 3)

    def release_when_waiting(sender: object, *, name: str, event: str) -> None:
        if event == LoaderEvent.LEASE_WAITED:
            catalogue.release_load.set()

    try:
        with signals.loader_event.connected_to(release_when_waiting):
            loaded = region.get()
    finally:
        catalogue.release_load.set()
        region.stop()

    assert (loaded.value, loaded.version) == ("list at 3", 3), loaded


def test_the_read_that_closes_the_circuit_does_not_serve_what_the_outage_left_as_a_hit() -> None:
    """Another process's write failed during this one's outage (its debt is in its memory):
    the fresh v1 in the cache is older than the database's version read at the recovery."""
    cache, catalogue = FlakyCache(), Catalogue()
    region = refresh_async_region(cache, catalogue)
    assert region.get().status is CacheStatus.MISS
    cache.failing = True
    catalogue.write()  # by another process: nothing owed here
    cache.heal()

    loaded = region.get()
    region.stop()

    assert (loaded.value, loaded.status) == ("list at 2", CacheStatus.MISS)


def test_a_reconcile_woken_by_a_write_never_races_the_writes_own_refresh() -> None:
    """The PostgreSQL listener hears a POST's commit and wakes a reconcile, which reads
    the cache before the POST's stale mark lands (BEHIND). Forced: while that reconcile
    reads the database's version, the whole write happens (mark, refresh, stored). Its
    repair must not take a second lease and load the list again: one change, one load."""
    cache, catalogue = FlakyCache(), Catalogue()
    region = refresh_async_region(cache, catalogue)
    assert region.get().status is CacheStatus.MISS
    loads_before = catalogue.loads
    leases: list[str] = []

    def count_leases(sender: object, *, name: str, event: str) -> None:
        if event == LoaderEvent.LEASE_ACQUIRED:
            leases.append(event)

    def the_write_lands_meanwhile() -> int:
        version = catalogue.write()
        region.after_write(version)
        deadline = time.monotonic() + WAIT_SECONDS
        while not is_fresh_at(region.current_entry(), version):  # the write's own refresh
            assert time.monotonic() < deadline, "the write's refresh never stored"
            time.sleep(0.01)
        return version

    signals.loader_event.connect(count_leases)
    region.reconciler.database_version = the_write_lands_meanwhile
    try:
        reconciliation = region.reconcile_once(fleet_lease=False)  # as a woken reconcile runs
    finally:
        signals.loader_event.disconnect(count_leases)
        assert region.stop()

    assert reconciliation.outcome == "behind"  # what it read before the write landed
    assert (leases, catalogue.loads - loads_before) == (["lease_acquired"], 1)
    assert region.get().value == "list at 2"


def is_fresh_at(entry: VersionedEntry | None, version: int) -> bool:
    return entry is not None and entry.is_fresh(time.time()) and entry.version == version


class HeardVersion:
    """A version source as the PostgreSQL listener is one: what the instance heard."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.listening = False

    def latest(self) -> int | None:
        return self.version

    def live(self) -> bool:
        return self.listening

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_a_heard_version_ends_the_near_copy_so_the_shared_cache_answers_not_the_database() -> None:
    """Another process stored version 2 and the instance heard it: this process's near
    copy of version 1 ends at once, and the shared cache (not a database load) answers."""
    shared, catalogue, heard = SimpleCache(), Catalogue(), HeardVersion()
    region = refresh_async_region(NearCache(shared, ttl=600), catalogue)
    region.follow(heard)
    assert region.get().status is CacheStatus.MISS  # loaded, kept near for ten minutes
    loads = catalogue.loads

    other_process = Region(shared, KEY, load=catalogue.load, database_version=lambda: 2, ttl=300)
    other_process.after_write(catalogue.write())  # a tombstone at 2 in the shared cache
    assert other_process.get().version == 2
    heard.version = 2

    loaded = region.get()
    region.stop()
    assert (loaded.value, loaded.status) == ("list at 2", CacheStatus.HIT)
    assert catalogue.loads == loads + 1, "only the other process loaded"


class PointerReads(SimpleCache):
    """The shared cache: counts the reads of the region's pointer."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: str) -> Any:
        self.reads += key == KEY
        return super().get(key)


def test_while_its_source_hears_every_change_the_near_copy_lives_longer_and_a_change_ends_it() -> (
    None
):
    """Near-cache TTL 1 s, 30 s while the source is live: the pointer is read once per 30 s,
    not once a second; deaf, once a second again; and a heard change still ends the copy."""
    clock, shared, catalogue, heard = FakeClock(), PointerReads(), Catalogue(), HeardVersion()
    near = NearCache(shared, ttl=1.0, clock=clock, wall_clock=clock)
    region = held_copy_region(near, catalogue, clock, near_ttl_while_heard=30.0)
    region.follow(heard)
    heard.listening = True
    assert region.get().status is CacheStatus.MISS  # stored, kept near for 30 s
    reads = shared.reads
    clock.advance(20)
    assert region.get().status is CacheStatus.HIT
    assert shared.reads == reads, "a live source's near copy was read again within 30 s"

    heard.listening = False
    clock.advance(11)
    assert region.get().status is CacheStatus.HIT  # read again: the copy is kept 1 s
    clock.advance(2)
    assert region.get().status is CacheStatus.HIT
    assert shared.reads == reads + 2

    heard.listening = True
    clock.advance(2)
    region.get()  # read, kept 30 s
    other_process = Region(shared, KEY, load=catalogue.load, database_version=lambda: 2, ttl=300)
    other_process.after_write(catalogue.write())
    heard.version = 2
    assert region.get().value == "list at 2"
    region.stop()


class StoreHeld(FlakyCache):
    """A cache whose next store of a fresh value waits until released (a slow PutItem)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.store_held = threading.Event()
        self.release_store = threading.Event()

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        if self.hold and isinstance(value, VersionedEntry) and value.is_fresh(time.time()):
            self.hold = False
            self.store_held.set()
            assert self.release_store.wait(WAIT_SECONDS), "the held store was never released"
        return super().set(key, value, timeout)


def test_a_refresh_loaded_but_not_stored_leaves_readers_the_stale_answer() -> None:
    """refresh-async: the refresh has loaded version 2 and its store is slow. A reader
    meanwhile is answered STALE at once, as before the write's refresh began; it does not
    queue for the lease behind the refresh (a second lease, a wait: the flaky
    test_refresh_async_answers_the_write... in test_cache_races.py)."""
    cache, catalogue = StoreHeld(), Catalogue()
    region = refresh_async_region(cache, catalogue)
    assert region.get().status is CacheStatus.MISS
    cache.hold = True
    region.after_write(catalogue.write())
    assert cache.store_held.wait(WAIT_SECONDS)
    events: list[str] = []

    def record(sender: object, *, name: str, event: str) -> None:
        events.append(event)

    try:
        with signals.loader_event.connected_to(record):
            loaded = region.get()
    finally:
        cache.release_store.set()
        assert region.stop()

    assert (loaded.value, loaded.status) == ("list at 1", CacheStatus.STALE)
    assert LoaderEvent.LEASE_WAITED not in events and LoaderEvent.LEASE_ACQUIRED not in events


def test_refresh_async_answers_a_heard_change_stale_while_one_refresh_loads_it() -> None:
    """refresh-async on PostgreSQL: a plain-SQL change is heard before anything in the
    cache names it. The reader is answered at once, STALE, with the list it has, and one
    background refresh loads the change. Forced: that load is held until the reader has
    its answer; a reader that led the load itself would wait for it (and fail here)."""
    cache, catalogue, heard = FlakyCache(), Catalogue(), HeardVersion()
    region = refresh_async_region(cache, catalogue)
    region.follow(heard)
    assert region.get().status is CacheStatus.MISS
    loads = catalogue.loads
    catalogue.write()  # with plain SQL: the app wrote nothing
    heard.version = catalogue.version
    catalogue.hold_loads = True
    try:
        loaded = region.get()
        assert (loaded.value, loaded.status) == ("list at 1", CacheStatus.STALE)
        assert catalogue.load_held.wait(WAIT_SECONDS), "no background refresh started"
    finally:
        catalogue.release_load.set()
    deadline = time.monotonic() + WAIT_SECONDS
    while (loaded := region.get()).status is not CacheStatus.HIT:
        assert loaded.value == "list at 1", "served the change before it was stored"
        assert time.monotonic() < deadline, "the refresh never stored the change"
        time.sleep(0.01)
    assert region.stop()
    assert (loaded.value, catalogue.loads - loads) == ("list at 2", 1)


# -- a failing cache never falls on the database --------------------------------------


def held_copy_region(
    cache: FlakyCache, catalogue: Catalogue, clock: FakeClock, **options: Any
) -> Region:
    """A region whose NewestVersion checks the database on ``clock`` (every 2 s)."""
    region = Region(
        cache,
        KEY,
        load=catalogue.load,
        database_version=lambda: catalogue.version,
        ttl=300,
        reconcile_seconds=2,
        **options,
    )
    region.owed.background = False
    region.newest.clock = clock
    return region


def answers(region: Region, reads: int) -> list[tuple[Any, CacheStatus]]:
    return [(loaded.value, loaded.status) for loaded in (region.get() for _ in range(reads))]


def test_a_failing_cache_serves_the_held_copy_and_loads_once_per_change() -> None:
    """A throttled or hung cache must not fall on the database: every read it fails is
    answered with the copy this process holds, as STALE, while the database's version
    (checked once per interval) has not moved past it; a change is loaded once."""
    cache, catalogue, clock = FlakyCache(), Catalogue(), FakeClock()
    region = held_copy_region(cache, catalogue, clock)
    assert region.get().status is CacheStatus.MISS
    loads = catalogue.loads
    cache.failing = True

    assert answers(region, 5) == [("list at 1", CacheStatus.STALE)] * 5
    assert catalogue.loads == loads, "the outage cost the database nothing"

    catalogue.write()  # elsewhere: another instance, plain SQL
    assert answers(region, 1) == [("list at 1", CacheStatus.STALE)], "checked once per interval"
    clock.advance(2.0)
    assert answers(region, 3) == [
        ("list at 2", CacheStatus.MISS),
        ("list at 2", CacheStatus.STALE),
        ("list at 2", CacheStatus.STALE),
    ]
    assert catalogue.loads == loads + 1, "one load for the change"
    region.stop()


@pytest.mark.parametrize("reader", ["writer", "neighbour"])
def test_a_write_during_the_outage_is_loaded_once_and_served_by_its_instance(
    tmp_path: Path, reader: str
) -> None:
    """Two workers of one instance behind ten-minute near copies; the writer's update does
    not land (a blip). The writer serves its write, loaded once; so does its neighbour,
    which held version 1 near, on its next read, not when the writer's retry lands plus
    its near copy's life. Fails without the instance's shared owed version: the
    neighbour answers HIT 'list at 1'."""
    cache, catalogue, clock = FlakyCache(), Catalogue(), FakeClock()
    writer, neighbour = (
        held_copy_region(NearCache(cache, ttl=600), catalogue, clock, instance_dir=tmp_path)
        for _ in range(2)
    )
    assert writer.get().status is CacheStatus.MISS
    assert neighbour.get() == Loaded("list at 1", 1, CacheStatus.HIT)  # kept near, 600 s
    loads = catalogue.loads
    cache.failing = True

    writer.after_write(catalogue.write())  # owed: the cache does not answer

    assert answers(writer if reader == "writer" else neighbour, 3) == [
        ("list at 2", CacheStatus.MISS),
        ("list at 2", CacheStatus.STALE),
        ("list at 2", CacheStatus.STALE),
    ]
    assert catalogue.loads == loads + 1
    cache.heal()
    writer.owed.retry_due(everything=True)  # lands
    assert neighbour.get().value == "list at 2"
    writer.stop()
    neighbour.stop()


def test_without_stale_if_error_every_read_the_cache_fails_is_loaded() -> None:
    cache, catalogue, clock = FlakyCache(), Catalogue(), FakeClock()
    region = held_copy_region(cache, catalogue, clock, stale_if_error=0)
    assert region.get().status is CacheStatus.MISS
    loads = catalogue.loads
    cache.failing = True

    assert answers(region, 3) == [("list at 1", CacheStatus.MISS)] * 3
    assert catalogue.loads == loads + 3
    region.stop()


class ProcessView(FlakyCache):
    """One process's way to a shared cache: its own circuit (``failing``), the store shared
    with every other view of ``shared`` (DynamoDB, as two workers each reach it)."""

    def __init__(self, shared: SimpleCache) -> None:
        super().__init__()
        self._cache = shared._cache


def test_a_reconcile_that_finds_the_cache_behind_and_cannot_repair_ends_the_older_copies(
    tmp_path: Path,
) -> None:
    """The randomized fault run's HIT: another instance's write is owed (its circuit is
    open), and the worker elected to reconcile here has its own circuit open too, while its
    neighbour's is closed. The reconcile reads the pointer through the near layer (version
    1), the database (version 2), and cannot take the repair lease. Both workers must stop
    serving version 1 at once: the reconciler's worker loads the change, the neighbour
    repairs the cache on its next read. Fails without it: both answer HIT 'list at 1' for
    as long as their near copies live (ten minutes here; CACHE_NEAR_TTL deployed)."""
    shared, catalogue, clock = SimpleCache(), Catalogue(), FakeClock()
    reconciling_view, neighbour_view = ProcessView(shared), ProcessView(shared)
    reconciling, neighbour = (
        held_copy_region(NearCache(view, ttl=600), catalogue, clock, instance_dir=tmp_path)
        for view in (reconciling_view, neighbour_view)
    )
    assert neighbour.get().status is CacheStatus.MISS
    assert reconciling.get() == Loaded("list at 1", 1, CacheStatus.HIT)  # both kept near
    catalogue.write()  # by the other instance, whose update is owed
    reconciling_view.failing = True  # this worker's circuit is open; its neighbour's is not

    reconciliation = reconciling.reconcile_once()

    assert (reconciliation.outcome, reconciliation.database_version) == ("failed", 2)
    assert reconciliation.cached_version == 1  # read through the near layer
    assert reconciling.get() == Loaded("list at 2", 2, CacheStatus.MISS)
    assert neighbour.get() == Loaded("list at 2", 2, CacheStatus.MISS)  # loaded and stored
    entry = neighbour.current_entry()
    assert entry is not None and (entry.value, entry.version) == ("list at 2", 2), "not repaired"
    reconciling.stop()
    neighbour.stop()


# -- an emptied table fences nothing: what the process knows must ------------------------


def write_through_region(cache: FlakyCache, catalogue: Catalogue) -> Region:
    """Write-through; a read the cache fails is loaded (and raises what was served)."""
    return region_on(cache, catalogue, Strategy.WRITE_THROUGH, stale_if_error=0)


def test_a_neighbours_older_update_landing_in_an_emptied_table_is_not_served_while_waiting() -> (
    None
):
    """The randomized fault run's "went back": this worker served version 3 (a delete),
    then DynamoDB restarted empty. Its next read finds nothing and waits for another
    process's lease; meanwhile a neighbour's owed write-through of version 2 lands, with
    no newer item left to fence it. The waiter must not take it as a HIT: it is older than
    what this worker has shown. Forced: the neighbour's retry runs when the reader is seen
    waiting. Fails without the floor in the lease's wait: HIT 'list at 2'."""
    shared, catalogue = SimpleCache(), Catalogue()
    reader_view, neighbour_view = ProcessView(shared), ProcessView(shared)
    reader = write_through_region(reader_view, catalogue)
    neighbour = write_through_region(neighbour_view, catalogue)
    assert reader.get().status is CacheStatus.MISS
    neighbour_view.failing = True
    neighbour.after_write(catalogue.write())  # version 2, owed: the neighbour's circuit is open
    reader.after_write(catalogue.write())  # version 3 (the delete) lands
    assert reader.get() == Loaded("list at 3", 3, CacheStatus.HIT)

    shared.clear()  # DynamoDB Local restarted empty; the app created the table again
    assert shared.add(reader.loader.lease_key, "another process loading", timeout=5)
    neighbour_view.heal()
    retried: list[int] = []

    def neighbours_retry_lands(sender: object, *, name: str, event: str) -> None:
        if event == LoaderEvent.LEASE_WAITED and sender is reader and not retried:
            retried.append(neighbour.owed.retry_due(everything=True))
            shared.delete(reader.loader.lease_key)  # the other process gave up

    try:
        with signals.loader_event.connected_to(neighbours_retry_lands):
            loaded = reader.get()
    finally:
        reader.stop()
        neighbour.stop()

    assert retried == [0], "the neighbour's update was not retried while the reader waited"
    assert (loaded.value, loaded.version) == ("list at 3", 3), loaded


def test_an_owed_write_through_older_than_what_the_process_served_is_read_back_again() -> None:
    """This process's write-through of version 2 is owed; meanwhile it served version 3
    (another instance's change, loaded while its cache failed), and the table came back
    empty: nothing there fences the retry. It must not land the list at 2 (every other
    process would serve it as a HIT until the reconciler repairs it): it reads the list
    back again and lands version 3. Fails without it: the cache holds 'list at 2'."""
    cache, catalogue = FlakyCache(), Catalogue()
    region = write_through_region(cache, catalogue)
    assert region.get().status is CacheStatus.MISS
    cache.failing = True
    region.after_write(catalogue.write())  # version 2: owed
    catalogue.write()  # version 3, by another instance
    assert region.get() == Loaded("list at 3", 3, CacheStatus.MISS)

    cache.heal()
    cache.clear()  # restarted empty
    try:
        assert region.owed.retry_due(everything=True) == 0
        entry = region.current_entry()
    finally:
        region.stop()

    assert entry is not None and (entry.value, entry.version) == ("list at 3", 3), entry
