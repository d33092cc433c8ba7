"""What this process last read from (or wrote to) a shared cache, kept in memory briefly.

:class:`NearCache` layers a small, bounded, in-process LRU over any
cachelib/Flask-Caching backend (the *remote*: DynamoDB, Redis, ...). A hit on
the near layer costs no network round trip, so a hot key read by every
request costs the shared cache at most one read per process per ``ttl``,
whatever the request rate. No Flask here.

Freshness, the whole contract:

- a value is kept for at most ``ttl`` seconds after this process read or wrote
  it, and never past its own timeout when this process set it; another
  process's write is therefore seen within ``ttl``;
- ``keep(value, now)`` (the caller's policy: this module knows no value types)
  says until when a value may be kept, or that it may not be; the loader's
  versioned entries use ``cache_backends.versioned.near_lifetime``, so
  tombstones, stale marks and entries past their freshness always come from
  the remote;
- ``rank(value)`` (the caller's too) and :meth:`NearCache.watch` end a copy
  early: a copy of a watched key ranked below the version its watcher has heard
  is not served, so a newer value known to exist (a region hears the database's
  change events) is read at once, not after ``ttl``; and while the watcher says it
  hears every change (:class:`WhileLive`), a watched key's copy may live longer: the
  changes end it, and the longer life only bounds what reaches the remote without one;
- this process's own writes (``set``, ``delete``, ``set_versioned``, ...) update
  or drop the near copy first, so the writer sees its write at once; a write
  the remote refuses or fails drops the near copy (the next read asks the remote);
- coordination never touches the near layer: a key this process has used with
  ``add``, ``inc`` or ``dec`` (a lease, a counter) is always read from the remote;
- when a near copy ends, one thread of the process reads the remote and the
  threads that miss meanwhile share its answer (``single_flight.py``), so the
  bound is one remote read per key, per process, per ``ttl``;
- a read that overlaps one of this process's writes is not kept, and two
  overlapping writes keep neither: the near copy never goes back in time;
- :meth:`NearCache.share` shares a key's copy with the instance's other processes
  (``shared.py``): a process whose copy ended takes the one another process read
  less than ``ttl`` ago, so the remote sees one read of it per *instance* per
  ``ttl``; a process never takes a shared copy read before its own last write of
  the key, and each write clears the shared copy.

Values are held frozen (``frozen.py``): a hit hands out the held object itself,
no unpickling and no copy, and a caller that tries to mutate it gets a
``TypeError`` instead of changing what the next caller gets. A value that
cannot be frozen (an arbitrary object) is held pickled and unpickled per hit,
as cachelib's SimpleCache does. The byte bound counts the larger of a value's
pickled size and what it says it holds in memory (``sys.getsizeof``: a value that
pickles smaller than it lives, or grows a memo, says so with ``__sizeof__``).

Failures follow ``cache_backends.strict``: :attr:`NearCache.strict` raises what
the remote's strict interface raises; the ``BaseCache`` methods degrade.
"""

from __future__ import annotations

import math
import pickle
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cache_backends import signals
from cache_backends.edge import DegradingEdge
from cache_backends.frozen import NotFreezable, freeze
from cache_backends.shared import SharedCopy
from cache_backends.single_flight import SingleFlight
from cache_backends.strict import on_recovery, strict_interface
from cache_backends.versioned import near_lifetime, near_rank

DEFAULT_MAX_ENTRIES = 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024

#: ``keep(value, now)``: until when (wall clock) ``value`` may be kept near; None: never.
KeepHook = Callable[[Any, float], float | None]
#: ``rank(value)``: how new a value is (a versioned entry's fence), None: not ranked.
RankHook = Callable[[Any], int | None]
#: ``heard()``: the lowest rank of a watched key still current (for a region, the
#: database's version as last heard), or None. Read on every near hit of that key.
HeardHook = Callable[[], int | None]
#: ``live()``: whether a watcher hears every change now. Read when a copy is kept.
LiveHook = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class WhileLive:
    """A watched key's near copy may live ``ttl`` while ``live()``: its watcher then hears
    every change, and each ends the copy at once."""

    live: LiveHook
    ttl: float


@dataclass(frozen=True, slots=True)
class _Held:
    """A value as this process holds it: frozen, or pickled when it cannot be frozen."""

    frozen: Any
    pickled: bytes | None
    size: int  # what max_bytes counts (see the module)

    @classmethod
    def of(cls, value: Any) -> _Held:
        pickled = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        try:
            return cls(freeze(value), None, max(len(pickled), sys.getsizeof(value)))
        except NotFreezable:
            return cls(None, pickled, len(pickled))

    def read(self) -> Any:
        """The value for one caller: the shared frozen object, or a copy of its own."""
        return self.frozen if self.pickled is None else pickle.loads(self.pickled)


@dataclass(frozen=True, slots=True)
class _NearCopy:
    held: _Held
    expires_at: float  # on the near cache's monotonic clock
    fresh_until: float  # wall clock: what the keep-hook allowed
    rank: int | None  # what the rank-hook said; a copy below the floor is not served


class NearStore:
    """The near layer over a remote's strict interface; failures raise (see the module)."""

    def __init__(
        self,
        remote: Any,
        ttl: float,
        *,
        default_timeout: int,
        keep: KeepHook,
        rank: RankHook,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.remote = remote
        self.ttl = ttl
        self.default_timeout = default_timeout
        self.keep = keep
        self.rank = rank
        #: Watched keys (``NearCache.watch``): what each has heard.
        self.floors: dict[str, HeardHook] = {}
        #: Watched keys' longer life while their watcher hears every change.
        self.lives: dict[str, WhileLive] = {}
        #: Shared keys (``NearCache.share``), and when (wall clock) this process last wrote each.
        self.shared: dict[str, SharedCopy] = {}
        self._written_at: dict[str, float] = {}
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._copies: OrderedDict[str, _NearCopy] = OrderedDict()
        self._bytes = 0
        #: Keys used for coordination (add/inc/dec), never kept near; bounded like the copies.
        self._coordination_keys: OrderedDict[str, None] = OrderedDict()
        #: Remote reads under way: one per key for all of this process's threads.
        self.remote_reads: SingleFlight[_Held | None] = SingleFlight()
        #: Raised by every write, and the writes under way: a read or a write that
        #: overlapped another write is not kept (see _keep).
        self._epoch = 0
        self._writes_in_flight = 0

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Any:
        copy = self._near_lookup(key)
        if copy is not None:
            return copy.held.read()
        if self._is_coordination(key):
            return self.remote.get(key)
        shared = self.shared.get(key)
        if shared is None:
            held, _ = self.remote_reads.run(key, lambda: self._read_remote(key))
        else:
            held, _ = self.remote_reads.run(key, lambda: self._read_shared(key, shared))
        return None if held is None else held.read()

    def get_many(self, *keys: str) -> list[Any]:
        answers: dict[str, Any] = {}
        for key in keys:
            copy = self._near_lookup(key)
            if copy is not None:
                answers[key] = copy.held.read()
        missing = [key for key in keys if key not in answers]
        if missing:
            epoch = self._read_epoch()
            for key, value in zip(missing, self.remote.get_many(*missing), strict=True):
                held = None if value is None else self._keep(key, value, since=epoch)
                answers[key] = value if held is None else held.read()
        return [answers[key] for key in keys]

    def has(self, key: str) -> bool:
        return self._near_lookup(key) is not None or bool(self.remote.has(key))

    # -- writes: the remote decides, the near copy follows -------------------

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return self._write_one(key, value, timeout, lambda: self.remote.set(key, value, timeout))

    def set_many(self, mapping: Mapping[str, Any], timeout: int | None = None) -> list[Any]:
        epoch = self._start_write(*mapping)
        try:
            stored = self.remote.set_many(mapping, timeout)
        finally:
            self._end_write()
        for key in stored:
            self._keep(key, mapping[key], timeout, since=epoch)
        return stored

    def delete(self, key: str) -> bool:
        self._start_write(key)
        try:
            return bool(self.remote.delete(key))
        finally:
            self._end_write()

    def delete_many(self, *keys: str) -> list[Any]:
        self._start_write(*keys)
        try:
            return self.remote.delete_many(*keys)
        finally:
            self._end_write()

    def clear(self) -> bool:
        with self._lock:
            self._copies.clear()
            self._bytes = 0
        self._start_write()
        try:
            return bool(self.remote.clear())
        finally:
            self._end_write()

    # -- coordination: always the remote's -----------------------------------

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        self._coordinate(key)
        return bool(self.remote.add(key, value, timeout))

    def inc(self, key: str, delta: int = 1) -> int | None:
        self._coordinate(key)
        return self.remote.inc(key, delta)

    def dec(self, key: str, delta: int = 1) -> int | None:
        self._coordinate(key)
        return self.remote.dec(key, delta)

    # -- the near layer ------------------------------------------------------

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """The remote's recoveries (``strict.on_recovery``): the near layer has none of its own."""
        on_recovery(self.remote, callback)

    def watch(self, key: str, heard: HeardHook, while_live: WhileLive | None = None) -> None:
        """See :meth:`NearCache.watch` (a region holds the strict interface)."""
        self.floors[key] = heard
        if while_live is not None and while_live.ttl > self.ttl:
            self.lives[key] = while_live

    def share(self, key: str, shared: SharedCopy) -> None:
        """See :meth:`NearCache.share`."""
        self.shared[key] = shared

    def near_size(self) -> tuple[int, int]:
        """Entries and bytes held now (diagnostics)."""
        with self._lock:
            return len(self._copies), self._bytes

    def _write_one(
        self, key: str, value: Any, timeout: int | None, write: Callable[[], Any]
    ) -> bool:
        """Run one write of ``key`` on the remote; keep ``value`` near if it was stored."""
        epoch = self._start_write(key)
        try:
            stored = bool(write())
        finally:
            self._end_write()
        if stored:
            self._keep(key, value, timeout, since=epoch)
        return stored

    def _near_lookup(self, key: str) -> _NearCopy | None:
        """A live near copy of ``key``, or None (ask the remote)."""
        with self._lock:
            copy = self._copies.get(key)
            if copy is not None and (
                copy.expires_at <= self._clock()
                or copy.fresh_until <= self._wall_clock()
                or self._below_floor(key, copy)
            ):
                self._remove(key)
                copy = None
            if copy is not None:
                self._copies.move_to_end(key)
        signals.near_lookup.send(self, hit=copy is not None)
        return copy

    def _below_floor(self, key: str, copy: _NearCopy) -> bool:
        """Whether a newer value than ``copy`` is known to exist (a change event was heard)."""
        heard = self.floors.get(key)
        if copy.rank is None or heard is None:
            return False
        floor = heard()
        return floor is not None and copy.rank < floor

    def _read_shared(self, key: str, shared: SharedCopy) -> _Held | None:
        """The instance's copy if it may be served here, else one remote read for all.

        The shared copy is kept for what is left of its ``ttl``, so a copy read by
        another process is never served past the bound its own would have.
        """
        epoch = self._read_epoch()
        found = self._servable(key, shared.read())
        if found is None:
            read_here: list[Any] = []

            def read_remote() -> Any:
                read_here.append(self.remote.get(key))
                return read_here[0]

            refreshed = shared.refresh(self._ttl(key), read_remote)
            if read_here:  # this process read it (and shared it if it may be shared)
                signals.shared_copy.send(self, taken=False)
                value = read_here[0]
                return (
                    None
                    if value is None
                    else self._keep(key, value, since=epoch) or _Held.of(value)
                )
            found = self._servable(key, refreshed)
        signals.shared_copy.send(self, taken=found is not None)
        if found is None:  # nobody published in time, or it may not be served: ask
            return self._read_remote(key)
        read_at, value = found
        lifetime = self._ttl(key) - max(0.0, self._wall_clock() - read_at)
        return self._keep(key, value, since=epoch, lifetime=lifetime) or _Held.of(value)

    def _servable(self, key: str, found: tuple[float, Any] | None) -> tuple[float, Any] | None:
        """``found`` (a shared copy and its read time) if this process may serve it."""
        if found is None or found[1] is None:
            return None
        read_at, value = found
        now = self._wall_clock()
        if now - read_at >= self._ttl(key) or read_at < self._written_at.get(key, -math.inf):
            return None
        if self.keep(value, now) is None:
            return None
        heard = self.floors.get(key)
        floor = None if heard is None else heard()
        rank = self.rank(value)
        if floor is not None and rank is not None and rank < floor:
            return None
        return found

    def _read_remote(self, key: str) -> _Held | None:
        """One remote read, kept near if it may be; shared with the threads that wait."""
        epoch = self._read_epoch()
        value = self.remote.get(key)
        if value is None:
            return None
        return self._keep(key, value, since=epoch) or _Held.of(value)

    def _ttl(self, key: str) -> float:
        """How long a copy of ``key`` may be served: longer while its watcher hears all."""
        while_live = self.lives.get(key)
        return while_live.ttl if while_live is not None and while_live.live() else self.ttl

    def _lifetime(self, key: str, timeout: int | None) -> float:
        """Seconds a value of ``key`` set with ``timeout`` (None: a read's) may be served near."""
        if timeout is None:
            timeout = self.default_timeout
        ttl = self._ttl(key)
        return ttl if timeout <= 0 else min(ttl, timeout)  # 0: kept for ever

    def _keep(
        self,
        key: str,
        value: Any,
        timeout: int | None = None,
        *,
        since: int | None,
        lifetime: float | None = None,
    ) -> _Held | None:
        """Keep ``value`` near unless it may not be, or its call overlapped a write.

        ``since`` is the epoch the read or write began in (None: a write was under
        way then). Kept only if no write has begun since and none is under way:
        otherwise the remote may hold the other write's value, in either order.
        Returns what is held, or None if nothing was kept.
        """
        fresh_until = self.keep(value, self._wall_clock())
        if fresh_until is None:
            self._drop(key)
            return None
        held = _Held.of(value)
        with self._lock:
            self._remove(key)
            if (
                since is None
                or since != self._epoch
                or self._writes_in_flight
                or key in self._coordination_keys
                or held.size > self.max_bytes
            ):
                return None
            if lifetime is None:
                lifetime = self._lifetime(key, timeout)
            expires_at = self._clock() + lifetime
            self._copies[key] = _NearCopy(held, expires_at, fresh_until, self.rank(value))
            self._bytes += held.size
            while len(self._copies) > self.max_entries or self._bytes > self.max_bytes:
                self._remove(next(iter(self._copies)))
        return held

    def _read_epoch(self) -> int | None:
        """The epoch a read begins in; None while a write is under way (keep nothing)."""
        with self._lock:
            return None if self._writes_in_flight else self._epoch

    def _start_write(self, *keys: str) -> int | None:
        """Drop the keys' copies and open a new epoch: the one this write may keep its
        value at, or None if another write is under way."""
        now = self._wall_clock()
        for key in keys:
            shared = self.shared.get(key)
            if shared is not None:
                self._written_at[key] = now
                shared.clear()
        with self._lock:
            for key in keys:
                self._remove(key)
            alone = self._writes_in_flight == 0
            self._writes_in_flight += 1
            self._epoch += 1
            epoch = self._epoch
        return epoch if alone else None

    def _end_write(self) -> None:
        with self._lock:
            self._writes_in_flight -= 1

    def _drop(self, key: str) -> None:
        with self._lock:
            self._remove(key)

    def _remove(self, key: str) -> None:
        """Forget ``key``'s copy; the caller holds the lock."""
        copy = self._copies.pop(key, None)
        if copy is not None:
            self._bytes -= copy.held.size

    def _is_coordination(self, key: str) -> bool:
        with self._lock:
            return key in self._coordination_keys

    def _coordinate(self, key: str) -> None:
        with self._lock:
            self._remove(key)
            self._coordination_keys[key] = None
            self._coordination_keys.move_to_end(key)
            while len(self._coordination_keys) > self.max_entries:
                self._coordination_keys.popitem(last=False)


class VersionedNearStore(NearStore):
    """A near layer over a remote with ``set_versioned`` (DynamoDBCache's conditional put)."""

    def set_versioned(
        self,
        key: str,
        value: Any,
        rank: int,
        timeout: int | None,
        expected_rank: int | None = None,
    ) -> bool:
        """The remote's rank-conditional set; kept near only if the remote stored it."""
        return self._write_one(
            key,
            value,
            timeout,
            lambda: self.remote.set_versioned(key, value, rank, timeout, expected_rank),
        )


class NearCache(DegradingEdge):
    """``remote`` with an in-process LRU in front of its reads; see the module docstring.

    :param remote: the shared backend; every write and every coordination call
        goes to it (through its strict interface).
    :param ttl: seconds a near copy may be served (the staleness bound for
        other processes' writes); above 0.
    :param keep: ``keep(value, now)``: until when (wall clock) a value may be
        kept, or None if it may not be; by default a versioned entry while it is
        fresh and any other value for ``ttl`` (``versioned.near_lifetime``).
    :param rank: ``rank(value)``: how new a value is, or None; with :meth:`watch`,
        it ends a near copy early, the moment a newer value is known to exist; by
        default a versioned entry's fence (``versioned.near_rank``).
    :param max_entries: near copies kept at most; the least recently used go first.
    :param max_bytes: bytes kept at most (see the module); a larger value is not kept.
    """

    def __init__(
        self,
        remote: Any,
        ttl: float,
        *,
        keep: KeepHook = near_lifetime,
        rank: RankHook = near_rank,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("a near-cache needs a ttl above 0")
        super().__init__(default_timeout=getattr(remote, "default_timeout", 300))
        self.remote = remote
        remote_strict = strict_interface(remote)
        store_class = VersionedNearStore if hasattr(remote_strict, "set_versioned") else NearStore
        self.strict: NearStore = store_class(
            remote_strict,
            ttl,
            default_timeout=self.default_timeout,
            keep=keep,
            rank=rank,
            max_entries=max_entries,
            max_bytes=max_bytes,
            clock=clock,
            wall_clock=wall_clock,
        )

    @property
    def ttl(self) -> float:
        return self.strict.ttl

    def watch(self, key: str, heard: HeardHook, while_live: WhileLive | None = None) -> None:
        """End ``key``'s near copy once ``heard()`` (cheap: no network call) names a
        newer rank than the copy's: a region watches the versions its process hears.
        With ``while_live``, the copy may be kept its longer ``ttl`` while its ``live()``."""
        self.strict.watch(key, heard, while_live)

    def share(self, key: str, shared: SharedCopy) -> None:
        """Share ``key``'s copy with the instance's other processes (``shared.py``): the
        remote then sees one read of it per instance per ``ttl``, not one per process."""
        self.strict.share(key, shared)

    def near_size(self) -> tuple[int, int]:
        """Entries and bytes held now (diagnostics)."""
        return self.strict.near_size()

    def health(self) -> dict[str, Any]:
        """The remote's health report (where it has one), with the near layer's size."""
        remote_health = getattr(self.remote, "health", None)
        report = remote_health() if callable(remote_health) else {}
        entries, size = self.near_size()
        return {**report, "near": {"ttl": self.ttl, "entries": entries, "bytes": size}}
