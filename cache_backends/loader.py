"""Read-through loading of one versioned key: one load per expiry, fleet-wide.

:class:`VersionedLoader` is the whole dance in one place, in the spirit of
dogpile.cache's ``get_or_create``; it works on any Flask-Caching/cachelib
backend and needs no Flask:

- a fresh entry is a ``HIT``;
- an entry past its TTL but inside its stale window (or marked stale by a
  write) is served at once as ``STALE``, and the caller that wins the lease
  reloads it in the background (RFC 5861's stale-while-revalidate);
- an absent entry or a tombstone is a ``MISS``: exactly one caller wins the
  lease and loads; the others poll the cache until its value appears, and load
  themselves only if the lease ends without one or their wait runs out. Inside
  one process only one thread polls; the others share its answer;
- every store goes through :func:`cache_backends.versioned.store_entry`, so
  an older snapshot never replaces a newer one.

The lease is ``cache.add(lease_key, token, timeout)``, atomic on DynamoDB (a
conditional put), SimpleCache (a lock) and Redis (SET NX): a holder that dies
blocks nobody for longer than the lease. A backend that fails is treated as
absent: the caller loads from the database instead (the cache is never a
dependency), and ``on_error`` hears about it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cache_backends.versioned import VersionedEntry, store_entry, timeout_for

logger = logging.getLogger(__name__)

#: A waiting process polls the cache from this interval, doubling up to the
#: maximum: two GetItems per poll on DynamoDB, a dozen or two polls per load.
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.1
LEASE_SUFFIX = ":lease"
#: A lease younger than its lifetime minus this is surely still ours: room for
#: clock skew between the instances that compare its expiry.
LEASE_SAFETY_MARGIN_SECONDS = 1.0
#: mark_stale is a compare-and-set: each failed attempt means the entry changed
#: between its read and its write (a store landed), so it reads again.
MARK_STALE_ATTEMPTS = 3

#: ``load()`` returns the value and the database version it was read at.
Load = Callable[[], tuple[Any, int]]


class CacheStatus(StrEnum):
    """Where an answer came from; the app sends it as the X-Cache header."""

    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"


class LoaderEvent(StrEnum):
    """What the loader reports to ``on_event`` (metrics)."""

    #: This caller won the lease and loaded (or refreshed).
    LEASE_ACQUIRED = "lease_acquired"
    #: Another caller held the lease; this one waited for its result.
    LEASE_WAITED = "lease_waited"
    #: The wait ran out without a result; this caller loaded itself.
    LEASE_TIMED_OUT = "lease_timed_out"
    #: A store was refused: the cache holds a newer version (or, on DynamoDB, the put
    #: failed: BaseCache's False does not say which; the backend logs failures).
    STORE_FENCED = "store_fenced"
    #: A background refresh could not be queued (pool full or shut down).
    REFRESH_DROPPED = "refresh_dropped"


class _BackendFailed(Exception):
    """The backend raised while taking the lease (already logged)."""


@dataclass(frozen=True, slots=True)
class _Lease:
    token: str
    acquired_at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class Loaded:
    value: Any
    version: int
    status: CacheStatus


class BackgroundRefresher:
    """A small, bounded pool for refreshes, drained on shutdown.

    Bounded twice: ``max_workers`` threads, and at most ``max_pending`` refreshes
    queued or running; a refresh that does not fit is refused (the caller releases
    its lease, and a later reader tries again) rather than piling up.
    """

    def __init__(self, max_workers: int = 1, max_pending: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="cache-refresh")
        self._slots = threading.BoundedSemaphore(max_pending)

    def submit(self, job: Callable[[], None]) -> bool:
        if not self._slots.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                job()
            except Exception:  # a refresh has no caller to raise to
                logger.exception("background cache refresh failed")
            finally:
                self._slots.release()

        try:
            self._pool.submit(run)
        except RuntimeError:  # shut down
            self._slots.release()
            return False
        return True

    def drain(self, timeout: float | None = None) -> bool:
        """Refuse new refreshes and wait for those queued; True if all finished in time."""
        self._pool.shutdown(wait=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._pool._threads):  # shutdown(wait=True) has no timeout
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(thread.is_alive() for thread in self._pool._threads)


class VersionedLoader:
    """Serve ``key`` of ``cache`` with one load per expiry; see the module docstring.

    :param cache: a Flask-Caching/cachelib backend object (not the ``Cache``
        extension wrapper): ``get``, ``set``, ``add``, ``delete``,
        and ``set_versioned`` where it has one.
    :param key: the key of the value.
    :param ttl: seconds a loaded value is fresh (a callable, for jitter); 0 or
        less: fresh for ever.
    :param stale_seconds: seconds past the TTL during which the old value is
        served as ``STALE`` while one caller refreshes it; 0 turns this off.
    :param lease_seconds: how long the right to load lasts, and how long a
        waiter waits before it loads itself. Longer than a load takes.
    :param refresher: runs background refreshes; None refreshes inline.
    :param on_event: called with each :class:`LoaderEvent`.
    :param on_error: called after a backend error was logged (the caller then
        behaves as if the cache were empty).
    """

    def __init__(
        self,
        cache: Any,
        key: str,
        *,
        ttl: Callable[[], float],
        stale_seconds: float = 0.0,
        lease_seconds: int = 5,
        refresher: BackgroundRefresher | None = None,
        on_event: Callable[[LoaderEvent], None] = lambda event: None,
        on_error: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.key = key
        self.lease_key = key + LEASE_SUFFIX
        self.ttl = ttl
        self.stale_seconds = stale_seconds
        self.lease_seconds = lease_seconds
        self.refresher = refresher
        self.on_event = on_event
        self.on_error = on_error
        self.clock = clock
        self._flight: Future[Loaded] | None = None  # this process's load under way
        self._flight_lock = threading.Lock()

    # -- reads -------------------------------------------------------------

    def get(self, load: Load) -> Loaded:
        """The value: fresh from the cache, stale while refreshing, or loaded once.

        A cache that fails is not coordinated through (no lease, no store: a
        write to a failing backend would only add its timeout to the answer),
        but a process still loads once for all its waiting threads, so an
        outage does not send every request to the database at once.
        """
        try:
            entry = self._read(strict=True)
        except _BackendFailed:
            return self._join_or_lead(load, min_version=0, through_cache=False)
        now = self.clock()
        if entry is not None and entry.is_fresh(now):
            return Loaded(entry.value, entry.version, CacheStatus.HIT)
        if entry is not None and entry.is_servable_stale(now):
            self.refresh_in_background(load, unless_fresh=True)
            return Loaded(entry.value, entry.version, CacheStatus.STALE)
        return self._join_or_lead(load, min_version=0 if entry is None else entry.fence)

    def _join_or_lead(self, load: Load, min_version: int, *, through_cache: bool = True) -> Loaded:
        """One caller per process goes for the lease; the process's others share its answer.

        Across processes the lease decides who loads; inside one, a thread that
        finds a load under way waits for it, so a process polls the cache once
        however many of its threads are waiting. A shared answer older than
        ``min_version`` (the tombstone this caller saw: a load that began
        before that write) is not taken; the caller joins a newer load or leads.
        A thread waits at most ``lease_seconds`` for its process's leader (whose
        load may hang), then loads itself.
        """
        deadline = time.monotonic() + self.lease_seconds
        while True:
            with self._flight_lock:
                flight = self._flight
                leading = flight is None
                if flight is None:
                    flight = self._flight = Future()
            if leading:
                return self._lead(flight, load, min_version, through_cache)
            self.on_event(LoaderEvent.LEASE_WAITED)
            try:  # re-raises the leader's load error
                shared: Loaded = flight.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                self.on_event(LoaderEvent.LEASE_TIMED_OUT)
                value, version = load()
                return Loaded(value, version, CacheStatus.MISS)
            if shared.version >= min_version:
                return Loaded(shared.value, shared.version, CacheStatus.HIT)

    def _lead(
        self, flight: Future[Loaded], load: Load, min_version: int, through_cache: bool
    ) -> Loaded:
        """Load for this process (under the lease if the cache works), then share the answer."""
        try:
            if through_cache:
                loaded = self._load_under_lease(load, min_version)
            else:
                value, version = load()
                loaded = Loaded(value, version, CacheStatus.MISS)
        except BaseException as error:
            self._end_flight()
            flight.set_exception(error)
            raise
        self._end_flight()  # first: a thread that refuses this answer must find a new flight
        flight.set_result(loaded)
        return loaded

    def _end_flight(self) -> None:
        with self._flight_lock:
            self._flight = None

    def _load_under_lease(self, load: Load, min_version: int = 0) -> Loaded:
        """Win the lease and load, or wait for the winner's value, or give up and load.

        A fresh entry older than ``min_version`` is not an answer: it can only be
        one whose fence expired, and the caller saw a newer write.
        """

        def usable(entry: VersionedEntry | None) -> bool:
            return (
                entry is not None and entry.is_fresh(self.clock()) and entry.version >= min_version
            )

        deadline = time.monotonic() + self.lease_seconds
        delay = POLL_FIRST_SECONDS
        waited = lease_missing = False
        while True:
            try:
                lease = self._acquire_lease()
            except _BackendFailed:
                value, version = load()  # no cache to coordinate through
                return Loaded(value, version, CacheStatus.MISS)
            if lease is not None:
                self.on_event(LoaderEvent.LEASE_ACQUIRED)
                try:
                    # Double-checked: a holder may have stored and released between
                    # our read and our add; loading again would be a wasted load.
                    entry = self._read(strict=True)
                    if usable(entry):
                        assert entry is not None
                        return Loaded(entry.value, entry.version, CacheStatus.HIT)
                    value, version = self._load_and_store(load)
                    return Loaded(value, version, CacheStatus.MISS)
                except _BackendFailed:  # failing since our add: load, store nothing
                    value, version = load()
                    return Loaded(value, version, CacheStatus.MISS)
                finally:
                    self._release_lease(lease)
            if not waited:
                self.on_event(LoaderEvent.LEASE_WAITED)
                waited = True
            if time.monotonic() >= deadline:
                self.on_event(LoaderEvent.LEASE_TIMED_OUT)
                value, version = self._load_and_store(load)
                return Loaded(value, version, CacheStatus.MISS)
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX_SECONDS)
            try:
                entry, holder = self._poll()
            except _BackendFailed:
                value, version = load()
                return Loaded(value, version, CacheStatus.MISS)
            if usable(entry):
                assert entry is not None
                return Loaded(entry.value, entry.version, CacheStatus.HIT)
            # add() refused while nobody holds the lease, twice running: the backend is
            # failing (DynamoDB's add answers False in an outage). Waiting would only
            # add the lease's length to a request the database can answer.
            if holder is None and lease_missing:
                value, version = load()
                return Loaded(value, version, CacheStatus.MISS)
            lease_missing = holder is None

    # -- writes ------------------------------------------------------------

    def store(self, value: Any, version: int) -> bool:
        """Store a value read at ``version`` (a load, or a write-through); True if stored."""
        now = self.clock()
        ttl = self.ttl()
        fresh_until = now + ttl if ttl > 0 else math.inf
        stale_until = fresh_until + self.stale_seconds
        return self._store(VersionedEntry(value, version, version, fresh_until, stale_until), now)

    def invalidate(self, version: int) -> bool:
        """Leave a tombstone at ``version``: a reader's older snapshot cannot land after it."""
        return self._store(VersionedEntry.tombstone(version), self.clock(), self._longest_life())

    def mark_stale(self, version: int) -> bool:
        """Keep the current value but no longer as fresh, fenced at ``version``.

        Readers get it as ``STALE`` (never blocked) until a refresh stores the
        value at ``version``; with no value cached, this is a tombstone.
        """
        for _ in range(MARK_STALE_ATTEMPTS):
            entry = self._read()
            now = self.clock()
            if entry is None or not entry.has_value:
                return self.invalidate(version)
            if entry.version >= version:
                return True  # loaded at (or after) this write already: nothing is stale
            stale = entry.marked_stale(version, now + self.lease_seconds)
            # The fence must outlive the serving window: a load that began before this
            # write may land long after the window closed, and must still be refused.
            longest = self._longest_life()  # 0: values never expire, nor may this
            keep = 0 if longest == 0 else max(timeout_for(stale, now), longest)
            if self._store(stale, now, timeout=keep, replacing=entry):
                return True
        return False

    def forget(self) -> bool:
        """Delete the entry whatever its version: for a database whose versions start again."""
        try:
            return bool(self.cache.delete(self.key))
        except Exception:
            self._backend_failed("delete")
            return False

    def refresh_in_background(self, load: Load, *, unless_fresh: bool = False) -> bool:
        """Reload on the refresher if this caller wins the lease; True if a refresh started.

        ``unless_fresh``: the caller read the entry stale, so an entry that is fresh
        once the lease is held was stored by the lease's previous holder between that
        read and our add (double-checked, as a foreground load is): nothing to reload.
        """
        try:
            lease = self._acquire_lease()
        except _BackendFailed:
            return False
        if lease is None:
            return False  # someone else is loading
        self.on_event(LoaderEvent.LEASE_ACQUIRED)

        def refresh() -> None:
            try:
                entry = self._read() if unless_fresh else None
                if entry is None or not entry.is_fresh(self.clock()):
                    self._load_and_store(load)
            finally:
                self._release_lease(lease)

        if self.refresher is None:
            try:
                refresh()
            except Exception:  # the caller already has its (stale) answer
                logger.exception("cache refresh of %r failed", self.key)
                return False
            return True
        if not self.refresher.submit(refresh):
            self.on_event(LoaderEvent.REFRESH_DROPPED)
            self._release_lease(lease)
            return False
        return True

    # -- internals ---------------------------------------------------------

    def _load_and_store(self, load: Load) -> tuple[Any, int]:
        value, version = load()
        self.store(value, version)
        return value, version

    def _longest_life(self) -> int:
        """Seconds a tombstone must outlive any value written before it: TTL + stale window."""
        ttl = self.ttl()
        return 0 if ttl <= 0 else math.ceil(ttl + self.stale_seconds)

    def _store(
        self,
        entry: VersionedEntry,
        now: float,
        timeout: int | None = None,
        replacing: VersionedEntry | None = None,
    ) -> bool:
        try:
            if timeout is None:
                timeout = timeout_for(entry, now)
            stored = store_entry(self.cache, self.key, entry, timeout, replacing=replacing)
        except Exception:
            self._backend_failed("store")
            return False
        if not stored:
            self.on_event(LoaderEvent.STORE_FENCED)
        return stored

    def _read(self, *, strict: bool = False) -> VersionedEntry | None:
        """The entry, or None; ``strict``: raise _BackendFailed if the backend failed."""
        try:
            entry = self.cache.get(self.key)
        except Exception:
            self._backend_failed("get")
            entry = None
        else:
            if not self._backend_reported_failure():
                return entry if isinstance(entry, VersionedEntry) else None
        if strict:
            raise _BackendFailed
        return None

    def _poll(self) -> tuple[VersionedEntry | None, Any]:
        """The entry and, while it is not fresh, the lease's holder.

        Two ``get``s rather than one ``get_many``: a backend may give ``get``
        a tighter budget (DynamoDBCache's get_timeout). Raises _BackendFailed
        when the backend failed: a waiter then loads.
        """
        entry = self._read(strict=True)
        if entry is not None and entry.is_fresh(self.clock()):
            return entry, None
        try:
            holder = self.cache.get(self.lease_key)
        except Exception as error:
            self._backend_failed("get")
            raise _BackendFailed from error
        if self._backend_reported_failure():
            raise _BackendFailed
        return entry, holder

    def _backend_reported_failure(self) -> bool:
        """A backend that never raises (DynamoDBCache) may say its last call failed.

        Its ``get`` answers None for a miss and an outage alike; ``last_call_failed``
        tells them apart. Already logged by the backend; reported to ``on_error``.
        """
        last_call_failed = getattr(self.cache, "last_call_failed", None)
        if last_call_failed is None or not last_call_failed():
            return False
        self.on_error()
        return True

    def _acquire_lease(self) -> _Lease | None:
        """The lease if this caller won it, None if someone holds it."""
        token = uuid.uuid4().hex
        acquired_at = time.monotonic()
        try:
            won = self.cache.add(self.lease_key, token, timeout=self.lease_seconds)
        except Exception as error:
            self._backend_failed("add")
            raise _BackendFailed from error
        if not won and self._backend_reported_failure():
            raise _BackendFailed  # the add failed: nobody holds the lease
        return _Lease(token, acquired_at) if won else None

    def _release_lease(self, lease: _Lease) -> None:
        """Delete the lease so the next expiry need not wait for it, if it is still ours.

        Ours for certain while well inside its lifetime (nobody can add a live
        key): one delete. Later, read first and delete if it still holds our
        token; BaseCache has no delete-if-equal, and the gap between the two
        costs at most one extra load, never a stale value (stores are fenced).
        """
        try:
            held = time.monotonic() - lease.acquired_at
            if held < self.lease_seconds - LEASE_SAFETY_MARGIN_SECONDS or (
                self.cache.get(self.lease_key) == lease.token
            ):
                self.cache.delete(self.lease_key)
        except Exception:
            self._backend_failed("delete")

    def _backend_failed(self, operation: str) -> None:
        logger.warning(
            "cache %s for %r failed; treated as a miss", operation, self.key, exc_info=True
        )
        self.on_error()
