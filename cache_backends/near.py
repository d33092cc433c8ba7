"""A near-cache: what a process read from (or wrote to) a shared cache, kept in memory briefly.

:class:`NearCache` layers a small, bounded, in-process LRU over any
cachelib/Flask-Caching backend (the *remote*: DynamoDB, Redis, ...). A hit on
the near layer costs no network round trip, so a hot key read by every
request costs the shared cache at most one read per process per ``ttl``,
whatever the request rate. No Flask here.

Freshness, the whole contract:

- a value is kept for at most ``ttl`` seconds after this process read or wrote
  it, and never past its own timeout when this process set it; another
  process's write is therefore seen within ``ttl``;
- this process's own writes (``set``, ``delete``, ``set_versioned``, ...) update
  or drop the near copy first, so the writer sees its write at once; a write
  the remote refuses or fails drops the near copy (the next read asks the remote);
- a :class:`~cache_backends.versioned.VersionedEntry` is kept only while fresh
  and never past its ``fresh_until``: tombstones, stale marks and entries in
  their stale-while-revalidate window always come from the remote, so the
  loader sees them exactly as it would without this layer;
- coordination never touches the near layer: a key this process has used with
  ``add``, ``inc`` or ``dec`` (a lease, a counter) is always read from the remote;
- when a near copy ends, one thread of the process reads the remote and the
  threads that miss meanwhile share its answer, so the bound is one remote
  read per key, per process, per ``ttl``, however many threads are reading;
- a read that overlaps one of this process's writes is not kept, and two
  overlapping writes keep neither: the near copy never goes back in time.

Values are pickled on the way in and unpickled on the way out, as cachelib's
SimpleCache does, so a caller that mutates what it got cannot change what the
next caller gets, and the byte bound counts real sizes.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from cachelib import BaseCache

from cache_backends.versioned import VersionedEntry, set_versioned_on

DEFAULT_MAX_ENTRIES = 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _NearCopy:
    payload: bytes
    expires_at: float  # on the near cache's monotonic clock
    fresh_until: float  # wall clock: a VersionedEntry's own freshness (inf for other values)


class NearCache(BaseCache):
    """``remote`` with an in-process LRU in front of its reads; see the module docstring.

    :param remote: the shared backend; every write and every coordination call
        goes to it.
    :param ttl: seconds a near copy may be served (the staleness bound for
        other processes' writes); above 0.
    :param max_entries: near copies kept at most; the least recently used go first.
    :param max_bytes: pickled bytes kept at most; a larger value is not kept.
    :param on_lookup: called with True for a near hit, False when the remote was asked.
    """

    def __init__(
        self,
        remote: Any,
        ttl: float,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        on_lookup: Callable[[bool], None] = lambda near_hit: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("a near-cache needs a ttl above 0")
        super().__init__(default_timeout=getattr(remote, "default_timeout", 300))
        self.remote = remote
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.on_lookup = on_lookup
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._copies: OrderedDict[str, _NearCopy] = OrderedDict()
        self._bytes = 0
        #: Keys used for coordination (add/inc/dec), never kept near; bounded like the copies.
        self._coordination_keys: OrderedDict[str, None] = OrderedDict()
        #: Remote reads under way, by key: (pickled value or None, the remote failed).
        self._flights: dict[str, Future[tuple[bytes | None, bool]]] = {}
        #: Raised by every write, and the writes under way: a read or a write that
        #: overlapped another write is not kept (see _keep).
        self._epoch = 0
        self._writes_in_flight = 0
        #: Per thread: None when its last call went to the remote (ask it whether it
        #: failed), else the answer's own failure flag (False for a near hit).
        self._answer = threading.local()

    def __getattr__(self, name: str) -> Any:
        """Anything beyond BaseCache (create_table, health, ...) is the remote's."""
        if name == "remote":  # not set yet (unpickling, a failed __init__)
            raise AttributeError(name)
        return getattr(self.remote, name)

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Any:
        found, value = self._near_lookup(key)
        if found:
            return value
        if self._is_coordination(key):
            return self.remote.get(key)
        return self._read_once(key)

    def get_many(self, *keys: str) -> list[Any]:
        answers: dict[str, Any] = {}
        for key in keys:
            found, value = self._near_lookup(key)
            if found:
                answers[key] = value
        missing = [key for key in keys if key not in answers]
        if missing:
            epoch = self._read_epoch()
            fetched = self.remote.get_many(*missing)
            failed = self._remote_failed()
            for key, value in zip(missing, fetched, strict=True):
                answers[key] = value
                if value is not None and not failed:
                    self._keep(key, value, since=epoch)
        return [answers[key] for key in keys]

    def has(self, key: str) -> bool:
        found, _ = self._near_lookup(key)
        return found or bool(self.remote.has(key))

    def last_call_failed(self) -> bool:
        """Whether this thread's last call failed: never for a near hit; a shared read's
        flag for a thread that joined one; else whatever the remote says."""
        failed = getattr(self._answer, "failed", None)
        return self._remote_failed() if failed is None else failed

    # -- writes: the remote decides, the near copy follows -------------------

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        epoch = self._start_write(key)
        try:
            stored = bool(self.remote.set(key, value, timeout))
        finally:
            self._end_write()
        if stored:
            self._keep(key, value, timeout, since=epoch)
        return stored

    def set_many(self, mapping: dict[str, Any], timeout: int | None = None) -> list[Any]:
        epoch = self._start_write(*mapping)
        try:
            stored = self.remote.set_many(mapping, timeout)
        finally:
            self._end_write()
        for key in stored:
            self._keep(key, mapping[key], timeout, since=epoch)
        return stored

    def set_versioned(
        self,
        key: str,
        value: Any,
        version: int,
        timeout: int | None,
        expected_version: int | None = None,
    ) -> bool:
        """The remote's version-conditional set (or its compare-and-set fallback)."""
        epoch = self._start_write(key)
        try:
            stored = set_versioned_on(self.remote, key, value, version, timeout, expected_version)
        finally:
            self._end_write()
        if stored:
            self._keep(key, value, timeout, since=epoch)
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

    def near_size(self) -> tuple[int, int]:
        """Entries and pickled bytes held now (diagnostics)."""
        with self._lock:
            return len(self._copies), self._bytes

    def _near_lookup(self, key: str) -> tuple[bool, Any]:
        """(True, value) for a live near copy; (False, None) means ask the remote."""
        with self._lock:
            copy = self._copies.get(key)
            if copy is not None and (
                copy.expires_at <= self._clock() or copy.fresh_until <= self._wall_clock()
            ):
                self._remove(key)
                copy = None
            if copy is not None:
                self._copies.move_to_end(key)
        self._answer.failed = False if copy is not None else None
        self.on_lookup(copy is not None)
        if copy is None:
            return False, None
        return True, pickle.loads(copy.payload)

    def _read_once(self, key: str) -> Any:
        """Read ``key`` from the remote, once for all of this process's threads that miss now.

        Each caller gets its own unpickled copy; a remote error reaches every one.
        """
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if not leading:
            payload, failed = flight.result()
            self._answer.failed = failed
            return None if payload is None else pickle.loads(payload)
        try:
            epoch = self._read_epoch()
            value = self.remote.get(key)
            failed = self._remote_failed()
            payload = None if value is None else pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
            if payload is not None and not failed:
                self._keep(key, value, payload=payload, since=epoch)
        except BaseException as error:
            self._end_flight(key)
            flight.set_exception(error)
            raise
        self._end_flight(key)
        flight.set_result((payload, failed))
        return value

    def _end_flight(self, key: str) -> None:
        with self._lock:
            del self._flights[key]

    def _lifetime(self, timeout: int | None) -> float:
        """Seconds a value set with ``timeout`` (None: a read's) may be served near."""
        if timeout is None:
            timeout = self.default_timeout
        return self.ttl if timeout <= 0 else min(self.ttl, timeout)  # 0: kept for ever

    def _keep(
        self,
        key: str,
        value: Any,
        timeout: int | None = None,
        *,
        since: int | None,
        payload: bytes | None = None,
    ) -> None:
        """Keep ``value`` near, unless it may not be, or its call overlapped a write.

        ``since`` is the epoch the read or write began in (None: a write was under
        way then). Kept only if no write has begun since and none is under way:
        otherwise the remote may hold the other write's value, in either order.
        """
        fresh_until = math.inf
        if isinstance(value, VersionedEntry):  # tombstones and stale marks: never near
            if not value.is_fresh(self._wall_clock()):
                self._drop(key)
                return
            fresh_until = value.fresh_until
        if payload is None:
            payload = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._remove(key)
            if (
                since is None
                or since != self._epoch
                or self._writes_in_flight
                or key in self._coordination_keys
                or len(payload) > self.max_bytes
            ):
                return
            expires_at = self._clock() + self._lifetime(timeout)
            self._copies[key] = _NearCopy(payload, expires_at, fresh_until)
            self._bytes += len(payload)
            while len(self._copies) > self.max_entries or self._bytes > self.max_bytes:
                self._remove(next(iter(self._copies)))

    def _read_epoch(self) -> int | None:
        """The epoch a read begins in; None while a write is under way (keep nothing)."""
        with self._lock:
            return None if self._writes_in_flight else self._epoch

    def _start_write(self, *keys: str) -> int | None:
        """Drop the keys' copies and open a new epoch: the one this write may keep its
        value at, or None if another write is under way."""
        with self._lock:
            for key in keys:
                self._remove(key)
            alone = self._writes_in_flight == 0
            self._writes_in_flight += 1
            self._epoch += 1
            epoch = self._epoch
        self._answer.failed = None
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
            self._bytes -= len(copy.payload)

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
        self._answer.failed = None

    def _remote_failed(self) -> bool:
        last_call_failed = getattr(self.remote, "last_call_failed", None)
        return bool(last_call_failed is not None and last_call_failed())
