"""Versioned cache entries and the one write rule that keeps them in order.

A value loaded from a database is only as new as the snapshot it was read
from. Two writers, or a slow reader and a writer, can reach the cache in the
opposite order from the one in which their snapshots were taken; a plain
``set`` would then leave the older list in the cache until its TTL. Here every
entry carries a *fence*, the database version it stands for, and
:func:`store_entry` never replaces an entry of a higher *rank*:

- rank = 2 x fence, plus 1 for a value loaded at its fence; so a newer
  version always wins, and at one version a loaded value wins over a
  tombstone or a stale mark (which only say "a value of this version is
  due"), while equal ranks replace each other (both describe one database).

The rule needs one atomic step from the backend:

- backends with a native ``set_versioned(key, value, rank, timeout)``
  (:class:`cache_backends.dynamodb.DynamoDBCache`: one conditional ``PutItem``)
  do it fleet-wide;
- any other backend gets a compare-and-set under a lock of this process. That
  is exact for an in-process cache (Flask-Caching's ``SimpleCache``) and only
  best effort for a shared one without ``set_versioned`` (Redis, Memcached),
  where another process can write between the read and the write.

No Flask here: any cachelib/Flask-Caching ``BaseCache`` works.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class VersionedEntry:
    """What a versioned key holds: a value (or a tombstone) and its freshness.

    :param value: the cached value; ignored for a tombstone.
    :param version: the database version ``value`` was read at.
    :param fence: no store with a lower version may replace this entry. Equal to
        ``version`` for a freshly loaded value; higher for a tombstone or a
        stale mark written after a database write.
    :param fresh_until: epoch seconds; until then the value is served as fresh.
    :param serve_stale_until: epoch seconds; until then an entry past
        ``fresh_until`` may still be served, marked stale, while one caller
        refreshes it.
    :param has_value: False for a tombstone (an invalidation that remembers
        its version, unlike a bare delete).
    """

    value: Any
    version: int
    fence: int
    fresh_until: float
    serve_stale_until: float
    has_value: bool = True

    def __sizeof__(self) -> int:
        """The value's size counted in: what the near-cache's byte bound reads."""
        return object.__sizeof__(self) + sys.getsizeof(self.value)

    @classmethod
    def tombstone(cls, version: int) -> VersionedEntry:
        return cls(None, version, version, 0.0, 0.0, has_value=False)

    @property
    def rank(self) -> int:
        """What stores compare: a higher version wins; at one version, a loaded value wins."""
        complete = self.has_value and self.version >= self.fence
        return 2 * self.fence + (1 if complete else 0)

    def is_fresh(self, now: float) -> bool:
        return self.has_value and now < self.fresh_until

    def is_servable_stale(self, now: float) -> bool:
        return self.has_value and now < self.serve_stale_until

    def marked_stale(self, fence: int, serve_stale_until: float) -> VersionedEntry:
        """This value, no longer fresh, fenced at ``fence`` (a write newer than it)."""
        return VersionedEntry(
            self.value,
            self.version,
            max(fence, self.fence),
            0.0,
            max(serve_stale_until, self.serve_stale_until),
        )


@dataclass(frozen=True, slots=True)
class Body:
    """Where a versioned entry's value lives when it is stored apart: a key of its own.

    The entry (``VersionedEntry(Body(key), ...)``) is then a small pointer whatever
    the value's size: readers, stale marks, tombstones and the reconciler read and
    write one small item, and a process reads the body again only when the pointer
    names another one (``VersionedLoader``). Each store writes a new key, never
    reused and never overwritten (a database restored from a backup may reach a
    version again with other rows), so a body once read may be kept as long as a
    pointer names it.
    """

    key: str


@runtime_checkable
class SupportsVersionedSet(Protocol):
    """A backend that can store a value unless the key holds a higher rank, atomically."""

    def set_versioned(
        self,
        key: str,
        value: Any,
        rank: int,
        timeout: int | None,
        expected_rank: int | None = None,
    ) -> bool:
        """Store ``value``; False if a live item of a higher ``rank`` is there.

        With ``expected_rank``: only if the item still holds exactly that rank.
        """


#: One lock per cache object for the compare-and-set of backends without set_versioned.
_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _lock_for(cache: Any) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(cache, threading.Lock())


def timeout_for(entry: VersionedEntry, now: float) -> int:
    """Whole seconds the backend keeps ``entry``: until it may no longer be served.

    Rounded up (backends and DynamoDB's TTL count whole seconds) and at least 1,
    since 0 means "never expire" to Flask-Caching backends.
    """
    keep_until = max(entry.serve_stale_until, entry.fresh_until)
    if math.isinf(keep_until):
        return 0
    return max(1, math.ceil(keep_until - now))


def store_entry(
    cache: Any,
    key: str,
    entry: VersionedEntry,
    timeout: int,
    *,
    replacing: VersionedEntry | None = None,
) -> bool:
    """Store ``entry`` unless ``key`` holds an entry of a higher rank; True if stored.

    With ``replacing`` (the entry the caller read and derived ``entry`` from): also
    only if the key still holds an entry of that rank, a compare-and-set.

    Backend errors propagate: the caller decides how a failing cache degrades.
    """
    expected_rank = None if replacing is None else replacing.rank
    if isinstance(cache, SupportsVersionedSet):
        return cache.set_versioned(key, entry, entry.rank, timeout, expected_rank)
    # Any other backend: a compare-and-set under this process's lock for ``cache`` (see
    # the module docstring for its reach).
    with _lock_for(cache):
        current = cache.get(key)
        current_rank = current.rank if isinstance(current, VersionedEntry) else None
        if expected_rank is not None and current_rank != expected_rank:
            return False
        if current_rank is not None and current_rank > entry.rank:
            return False
        return bool(cache.set(key, entry, timeout=timeout))


def near_lifetime(value: Any, now: float) -> float | None:
    """Until when (epoch seconds) a near-cache may keep ``value``, None: not at all.

    The keep-hook ``NearCache`` is given; ``now`` is its wall clock.

    A VersionedEntry is kept only while fresh, and never past its ``fresh_until``
    (epoch seconds): tombstones, stale marks and entries in their
    stale-while-revalidate window always come from the shared cache, so the
    loader sees them exactly as it would without a near layer. Anything else
    may be kept for the near-cache's own ttl (``math.inf`` here).
    """
    if not isinstance(value, VersionedEntry):
        return math.inf
    return value.fresh_until if value.is_fresh(now) else None


def pointer_bytes(value: Any) -> bytes | None:
    """A fresh pointer (an entry whose value is a :class:`Body`) as JSON, for an instance's
    processes to share (``shared.py``); None for anything else, which is never shared."""
    if not (
        isinstance(value, VersionedEntry)
        and isinstance(value.value, Body)
        and value.is_fresh(time.time())
    ):
        return None
    fields = [value.value.key, value.version, value.fence, value.fresh_until]
    return json.dumps([*fields, value.serve_stale_until]).encode()


def pointer_from_bytes(data: bytes) -> VersionedEntry:
    """What :func:`pointer_bytes` wrote; ValueError for anything else."""
    try:
        key, version, fence, fresh_until, serve_stale_until = json.loads(data)
    except (TypeError, ValueError) as error:
        raise ValueError(f"not a shared pointer: {error}") from error
    numbers_ok = all(isinstance(n, int | float) for n in (fresh_until, serve_stale_until))
    if not (isinstance(key, str) and type(version) is int and type(fence) is int and numbers_ok):
        raise ValueError("not a shared pointer: wrong field types")
    return VersionedEntry(Body(key), version, fence, float(fresh_until), float(serve_stale_until))


def near_rank(value: Any) -> int | None:
    """How new ``value`` is for ``NearCache``'s floor: a VersionedEntry's fence, else None.

    The fence, not the value's version: a tombstone or stale mark is fenced at the
    write it stands for, and is as current as that write.
    """
    return value.fence if isinstance(value, VersionedEntry) else None
