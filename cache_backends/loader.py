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
  an older snapshot never replaces a newer one;
- the value is stored apart from its entry, under a key of its own written once
  (:class:`~cache_backends.versioned.Body`): the entry is a small pointer that
  readers, marks and the reconciler read and write, and a process reads a body
  only when the pointer names one it has not read yet. What a read costs
  leaves the catalogue's size; only a change pays for it;
- an entry fenced below ``newest.known()`` (a version this process knows of
  that the cache has not reached: its own write not landed, a change heard), or
  holding a value older than ``newest.served()`` (one it has already shown), is
  never served: it is loaded again (``region.NewestVersion``).

The write methods take ``strict=True`` where an update that did not land must
be told from one the fence refused (``cache_backends.owed``): a failure then
raises :class:`~cache_backends.strict.CacheUnavailable`.

The seams are modules of their own: the fleet-wide lease (``lease.py``), the
in-process sharing of one load (``single_flight.py``), the background pool
(``refresher.py``) and the fenced store (``versioned.py``). The loader talks to
the backend's strict interface (``cache_backends.strict``): a call that fails
raises, so "absent" and "failed" never look alike. A failing backend is treated
as absent: the caller loads from the database instead (the cache is never a
dependency), and ``on_error`` hears about it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import KW_ONLY, dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Protocol

from cache_backends.background import backoff
from cache_backends.body_store import BodyStore
from cache_backends.held import Held, HeldCopy
from cache_backends.lease import Lease, lease_key_for
from cache_backends.refresher import BackgroundRefresher
from cache_backends.single_flight import SingleFlight
from cache_backends.strict import CacheUnavailable, request_path, strict_interface
from cache_backends.versioned import Body, VersionedEntry, store_entry, timeout_for

logger = logging.getLogger(__name__)

#: A waiting process polls the cache from this interval, doubling up to the
#: maximum: two GetItems per poll on DynamoDB, a dozen or two polls per load.
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.1
#: mark_stale is a compare-and-set: each failed attempt means the entry changed
#: between its read and its write (a store landed), so it reads again.
MARK_STALE_ATTEMPTS = 3
#: What ``_value`` answers for a body that expired or was evicted before its pointer.
_GONE = object()

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
    #: A store was refused: the cache holds a newer version (a failed store is an
    #: error, reported to on_error instead).
    STORE_FENCED = "store_fenced"
    #: A background refresh could not be queued (pool full or shut down).
    REFRESH_DROPPED = "refresh_dropped"
    #: The cache failed and the copy this process holds was served (``stale_if_error``).
    HELD_COPY_SERVED = "held_copy_served"


class StaleMark(IntEnum):
    """What :meth:`VersionedLoader.stale_mark` did; false only when refused."""

    #: The cache holds something newer (or changed under every attempt): not marked.
    REFUSED = 0
    #: The value is marked stale at the write's version: a refresh is due.
    MARKED = 1
    #: The cached value was loaded at (or after) the write already: nothing is stale.
    CURRENT = 2
    #: Nothing was cached to keep: a tombstone was left instead.
    TOMBSTONE = 3


class Newest(Protocol):
    """What the loader compares an entry with (``region.NewestVersion``)."""

    def known(self) -> int:
        """No entry fenced below this version is served."""

    def served(self) -> int:
        """No value older than this version is served."""

    def still_current(self, version: int) -> bool:
        """Whether a copy at ``version`` may be served while the cache cannot be asked."""


class NothingNewer:
    """The default: nothing newer than the cache is known."""

    def known(self) -> int:
        return 0

    def served(self) -> int:
        return 0

    def still_current(self, version: int) -> bool:
        return True


class _BackendFailed(Exception):
    """The backend failed (already logged, and reported to ``on_error``)."""


def _unavailable(operation: str, key: str, error: Exception) -> CacheUnavailable:
    """``error`` as the strict interface's failure: backends without one raise anything."""
    if isinstance(error, CacheUnavailable):
        return error
    wrapped = CacheUnavailable(f"{operation} of {key!r} failed: {error}")
    wrapped.__cause__ = error
    return wrapped


@dataclass(frozen=True, slots=True)
class Loaded:
    value: Any
    version: int
    status: CacheStatus


@dataclass(eq=False)
class VersionedLoader:
    """Serve ``key`` of ``cache`` with one load per expiry; see the module docstring.

    :param cache: a Flask-Caching/cachelib backend object (not the ``Cache``
        extension wrapper): ``get``, ``set``, ``add``, ``delete``,
        and ``set_versioned`` where it has one. The loader uses its strict
        interface (``cache_backends.strict``), on which a failure raises.
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
    :param newest: what this process knows (``region.NewestVersion``): an entry
        fenced below ``newest.known()``, or holding a value older than
        ``newest.served()``, is loaded again under the lease instead of served.
    :param stale_if_error: seconds (RFC 5861's ``stale-if-error``) the value this
        process holds (the last it served, read or loaded) is served as ``STALE``
        while the cache fails, counted from the last moment the cache or the
        database confirmed it, and only while ``newest.still_current`` allows: a
        failing cache then costs the database one load per change, not one per
        request. 0: every read the cache fails is loaded.
    :param stale_while_behind: an entry fenced below ``newest.known()`` (a change this
        process heard of, or wrote, that the cache does not name yet) is served as
        ``STALE`` while one background refresh loads the change, instead of loaded
        under the lease while the reader waits: refresh-async's promise, whoever
        made the change.
    """

    cache: Any
    key: str
    _: KW_ONLY
    ttl: Callable[[], float]
    stale_seconds: float = 0.0
    lease_seconds: int = 5
    refresher: BackgroundRefresher | None = None
    on_event: Callable[[LoaderEvent], None] = lambda event: None
    on_error: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.time
    newest: Newest = field(default_factory=NothingNewer)
    stale_if_error: float = 0.0
    stale_while_behind: bool = False
    #: Where the values' bodies are written and read (``body_store.py``); None: in
    #: ``cache`` through its own ``get`` and ``set``.
    bodies: BodyStore | None = None

    def __post_init__(self) -> None:
        self.cache = strict_interface(self.cache)
        self._bodies = self.bodies or BodyStore(self.cache)
        self.lease_key = lease_key_for(self.key)
        self._flights: SingleFlight[Loaded] = SingleFlight()  # this process's load under way
        #: What this process served, read or loaded last (``held.py``).
        self._held = HeldCopy()

    # -- reads -------------------------------------------------------------

    def get(self, load: Load) -> Loaded:
        """The value: fresh from the cache, stale while refreshing, or loaded once.

        A cache that fails is not coordinated through (no lease, no store: a
        write to a failing backend would only add its timeout to the answer),
        but a process still loads once for all its waiting threads, so an
        outage does not send every request to the database at once.

        Every call made on the caller's thread has the request path's budget: a
        read its short timeout, and the writes after it (the lease, the store after a
        load, the release) one shared :func:`~cache_backends.strict.request_path`, in
        which the first call that fails skips the others. A cache that hangs mid-way
        costs the caller one short timeout, never a retried patient one, and a hit
        enters no context at all. A background refresh keeps the patient budget.
        """
        try:
            entry = self._read(strict=True)
        except _BackendFailed:
            return self._without_the_cache(load)
        self._held.cache_answered()
        if entry is None:
            return self._join_or_lead(load, min_version=0)
        known = self.newest.known()
        behind = entry.fence < known  # missing a write this process knows of
        if behind and not (self.stale_while_behind and entry.has_value):
            return self._join_or_lead(load, min_version=known)
        served = self.newest.served()
        if entry.has_value and entry.version < served:  # older than what it has shown
            return self._join_or_lead(load, min_version=served)
        now = self.clock()
        fresh = entry.is_fresh(now) and not behind
        if entry.is_fresh(now) or entry.is_servable_stale(now):
            try:
                loaded = self._served(entry, CacheStatus.HIT if fresh else CacheStatus.STALE)
            except _BackendFailed:
                return self._without_the_cache(load)
            if loaded is not None:
                if not fresh:
                    with request_path():  # the lease is taken here; the refresh runs apart
                        self.refresh_in_background(load, unless_fresh=True, min_version=known)
                return loaded
        return self._join_or_lead(load, min_version=max(entry.fence, known))

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

        def lead() -> Loaded:
            if through_cache:
                with request_path():
                    return self._load_under_lease(load, min_version)
            value, version = load()
            return Loaded(value, version, CacheStatus.MISS)

        while True:
            try:  # re-raises the leader's load error
                loaded, led = self._flights.run(
                    self.key,
                    lead,
                    timeout=max(0.0, deadline - time.monotonic()),
                    on_wait=lambda: self.on_event(LoaderEvent.LEASE_WAITED),
                )
            except FutureTimeout:
                self.on_event(LoaderEvent.LEASE_TIMED_OUT)
                value, version = load()
                return Loaded(value, version, CacheStatus.MISS)
            if led:
                self._held.hold(Held(None, loaded.value, loaded.version))
                return loaded
            if loaded.version >= min_version and loaded.version >= self.newest.served():
                return Loaded(loaded.value, loaded.version, CacheStatus.HIT)

    def _load_under_lease(self, load: Load, min_version: int = 0) -> Loaded:
        """Win the lease and load, or wait for the winner's value, or give up and load.

        A fresh entry older than ``min_version`` is not an answer: it can only be
        one whose fence expired, and the caller saw a newer write. Nor is one below
        what this process knows or has served (:meth:`_below_newest`), read when it
        is found: a cache emptied under a waiter (a table re-created) fences nothing,
        and an older update owed elsewhere may land there while it waits.
        """

        def usable(entry: VersionedEntry | None) -> bool:
            return (
                entry is not None
                and entry.is_fresh(self.clock())
                and entry.version >= min_version
                and not self._below_newest(entry)
            )

        deadline = time.monotonic() + self.lease_seconds
        polls = 0
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
                    hit = self._served(entry, CacheStatus.HIT) if usable(entry) else None
                    if hit is not None:
                        return hit
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
            time.sleep(backoff(polls, first=POLL_FIRST_SECONDS, cap=POLL_MAX_SECONDS))
            polls += 1
            try:
                entry, holder = self._poll()
                hit = self._served(entry, CacheStatus.HIT) if usable(entry) else None
            except _BackendFailed:
                value, version = load()
                return Loaded(value, version, CacheStatus.MISS)
            if hit is not None:
                return hit
            # add() refused while nobody holds the lease, twice running: a backend with
            # no strict interface is failing (cachelib's DynamoDbCache answers False in
            # an outage). Waiting would only add the lease's length to a request the
            # database can answer.
            if holder is None and lease_missing:
                value, version = load()
                return Loaded(value, version, CacheStatus.MISS)
            lease_missing = holder is None

    # -- writes ------------------------------------------------------------

    # ``strict=True`` (the write path, owed updates, the reconciler): a backend
    # failure raises CacheUnavailable instead of answering False, so that False
    # only ever means "refused: the cache holds something newer" and an update
    # that did not land can be owed.

    def store(self, value: Any, version: int, *, strict: bool = False) -> bool:
        """Store a value read at ``version`` (a load, or a write-through); True if stored.

        The body first, under a new key, then the pointer to it: a reader that finds
        the pointer finds its body. A body whose pointer is refused (a newer one is
        there) is left to its TTL.
        """
        now = self.clock()
        ttl = self.ttl()
        fresh_until = now + ttl if ttl > 0 else math.inf
        stale_until = fresh_until + self.stale_seconds
        body = None if value is None else BodyStore.new_body(self.key)
        if body is not None and not self._store_body(body, value, strict=strict):
            return False  # refused (too large) or failed: the pointer must not name it
        entry = VersionedEntry(
            value if body is None else body, version, version, fresh_until, stale_until
        )
        if not self._store(entry, now, strict=strict):
            return False
        self._held.hold(Held(None if body is None else body.key, value, version))
        return True

    def invalidate(self, version: int, *, strict: bool = False) -> bool:
        """Leave a tombstone at ``version``: a reader's older snapshot cannot land after it."""
        tombstone = VersionedEntry.tombstone(version)
        return self._store(tombstone, self.clock(), self._longest_life(), strict=strict)

    def mark_stale(self, version: int, *, strict: bool = False) -> bool:
        """Keep the current value but no longer as fresh, fenced at ``version``.

        Readers get it as ``STALE`` (never blocked) until a refresh stores the
        value at ``version``; with no value cached, this is a tombstone. True unless
        refused (:meth:`stale_mark` says what was done).
        """
        return self.stale_mark(version, strict=strict) is not StaleMark.REFUSED

    def stale_mark(self, version: int, *, strict: bool = False) -> StaleMark:
        """:meth:`mark_stale`, telling a mark (a refresh is due) from a value already current."""
        for _ in range(MARK_STALE_ATTEMPTS):
            entry = self.pointer() if strict else self._read()
            now = self.clock()
            if entry is None or not entry.has_value:
                tombstone = self.invalidate(version, strict=strict)
                return StaleMark.TOMBSTONE if tombstone else StaleMark.REFUSED
            if entry.version >= version:
                return StaleMark.CURRENT  # loaded at (or after) this write: nothing is stale
            stale = entry.marked_stale(version, now + self.lease_seconds)
            # The fence must outlive the serving window: a load that began before this
            # write may land long after the window closed, and must still be refused.
            longest = self._longest_life()  # 0: values never expire, nor may this
            keep = 0 if longest == 0 else max(timeout_for(stale, now), longest)
            if self._store(stale, now, timeout=keep, replacing=entry, strict=strict):
                return StaleMark.MARKED
        return StaleMark.REFUSED

    def current_entry(self) -> VersionedEntry | None:
        """What the cache holds under the key now, its value in place (None: nothing,
        not an entry, or its body is gone).

        Raises CacheUnavailable when the cache could not be asked.
        """
        return self.resolved(self.pointer())

    def pointer(self) -> VersionedEntry | None:
        """The entry as stored: versions, fence and freshness; its value may be a
        :class:`Body` (:meth:`resolved` reads it). One small read, whatever the value.

        Raises CacheUnavailable when the cache could not be asked: the reconciler
        must not take an outage for an empty cache.
        """
        try:
            return self._read(strict=True)
        except _BackendFailed as failed:
            raise CacheUnavailable(f"get of {self.key!r} failed") from failed

    def resolved(self, entry: VersionedEntry | None) -> VersionedEntry | None:
        """``entry`` with its value in place of its body; None if it, or its body, is gone.

        Raises CacheUnavailable when the body could not be read.
        """
        if entry is None or not isinstance(entry.value, Body):
            return entry
        try:
            value = self._value(entry)
        except _BackendFailed as failed:
            raise CacheUnavailable(f"get of {entry.value.key!r} failed") from failed
        return None if value is _GONE else dataclasses.replace(entry, value=value)

    def forget(self, *, strict: bool = False) -> bool:
        """Delete the entry whatever its version: for a database whose versions start again."""
        try:
            return bool(self.cache.delete(self.key))
        except Exception as error:
            self._backend_failed("delete", error)
            if not strict:
                return False
            raise _unavailable("delete", self.key, error)  # noqa: B904 (cause set)

    def refresh_in_background(
        self, load: Load, *, unless_fresh: bool = False, min_version: int = 0
    ) -> bool:
        """Reload on the refresher if this caller wins the lease; True if a refresh started.

        ``unless_fresh``: the caller read the entry stale, so an entry that is fresh
        (and fenced at ``min_version`` or past it) once the lease is held was stored by
        the lease's previous holder between that read and our add (double-checked, as
        a foreground load is): nothing to reload.
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
                if entry is None or not entry.is_fresh(self.clock()) or entry.fence < min_version:
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

    def _below_newest(self, entry: VersionedEntry) -> bool:
        """Whether ``entry`` is fenced below a version this process knows of, or holds a
        value older than one it has served: never an answer, however it was found."""
        return entry.fence < self.newest.known() or entry.version < self.newest.served()

    def _served(self, entry: VersionedEntry | None, status: CacheStatus) -> Loaded | None:
        """``entry`` answered as ``status``; None if its body is gone (load it again).

        Raises _BackendFailed when the body could not be read.
        """
        if entry is None:
            return None
        value = self._value(entry)
        return None if value is _GONE else Loaded(value, entry.version, status)

    def _value(self, entry: VersionedEntry) -> Any:
        """``entry``'s value: in the entry, or in its body, read once per body.

        ``_GONE`` when the body expired or was evicted before its pointer. Raises
        _BackendFailed when it could not be read.
        """
        body = entry.value
        if not isinstance(body, Body):
            self._held.hold(Held(None, body, entry.version))
            return body
        known, value = self._held.value_of_body(body.key)
        if known:
            return value
        try:
            value = self._bodies.get(body.key)
        except Exception as error:
            self._backend_failed("get", error)
            raise _BackendFailed from error
        if value is None:
            return _GONE
        self._held.hold(Held(body.key, value, entry.version))
        return value

    def _without_the_cache(self, load: Load) -> Loaded:
        """The cache failed: the copy this process holds while it may, else one load.

        The held copy is served as ``STALE`` within ``stale_if_error`` of its last
        confirmation and while ``newest.still_current`` (nothing newer is known: no
        write of this process owed, no change heard, the database's version not
        past it). Otherwise the process loads once for all its waiting threads, and
        holds what it loaded.
        """
        serving = self._held.without_the_cache(self.stale_if_error, self.newest.still_current)
        if serving is not None:
            held, first_in_outage = serving
            if first_in_outage:
                logger.warning(
                    "cache unavailable for %r: serving the copy held here (version %d) "
                    "for up to %s s while it lasts",
                    self.key,
                    held.version,
                    self.stale_if_error,
                )
            self.on_event(LoaderEvent.HELD_COPY_SERVED)
            return Loaded(held.value, held.version, CacheStatus.STALE)
        return self._join_or_lead(load, min_version=0, through_cache=False)

    def _store_body(self, body: Body, value: Any, *, strict: bool) -> bool:
        """Write ``value`` under ``body``'s key, to outlive every pointer to it; True if stored.

        A stale mark keeps a pointer up to :meth:`_longest_life` past the moment it
        lands, itself within the value's own life: twice that, and a lease more.
        """
        longest = self._longest_life()
        timeout = 0 if longest == 0 else 2 * longest + self.lease_seconds
        try:
            return self._bodies.put(body, value, timeout)
        except Exception as error:
            self._backend_failed("store", error)
            if not strict:
                return False
            raise _unavailable("store", body.key, error)  # noqa: B904 (cause set)

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
        *,
        strict: bool = False,
    ) -> bool:
        try:
            if timeout is None:
                timeout = timeout_for(entry, now)
            stored = store_entry(self.cache, self.key, entry, timeout, replacing=replacing)
        except Exception as error:
            self._backend_failed("store", error)
            if not strict:
                return False
            raise _unavailable("store", self.key, error)  # noqa: B904 (cause set)
        if not stored:
            self.on_event(LoaderEvent.STORE_FENCED)
        return stored

    def _read(self, *, strict: bool = False) -> VersionedEntry | None:
        """The entry, or None; ``strict``: raise _BackendFailed if the backend failed."""
        try:
            entry = self.cache.get(self.key)
        except Exception as error:
            self._backend_failed("get", error)
            if strict:
                raise _BackendFailed from error
            return None
        return entry if isinstance(entry, VersionedEntry) else None

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
            return entry, self.cache.get(self.lease_key)
        except Exception as error:
            self._backend_failed("get", error)
            raise _BackendFailed from error

    def _acquire_lease(self) -> Lease | None:
        """The lease if this caller won it, None if someone holds it."""
        try:
            return Lease.acquire(self.cache, self.lease_key, self.lease_seconds)
        except Exception as error:
            self._backend_failed("add", error)
            raise _BackendFailed from error

    def _release_lease(self, lease: Lease) -> None:
        try:
            lease.release(self.cache)
        except Exception as error:
            self._backend_failed("delete", error)

    def _backend_failed(self, operation: str, error: Exception) -> None:
        """Report a failed cache call; logged here unless the backend logged it already."""
        if not isinstance(error, CacheUnavailable):
            logger.warning(
                "cache %s for %r failed; treated as a miss", operation, self.key, exc_info=error
            )
        self.on_error()
