"""The reconciler: compare the database's version with the cache's, repair what is behind.

A write's cache update is owed until it lands (``cache_backends.owed``), but a
debt lives in one process's memory: a worker killed right after its commit, a
change made with plain SQL (the database's trigger raised the version, nobody
touched the cache) or a database restored from an older backup leave nothing
owed anywhere. The reconciler makes convergence a guarantee, whatever failed in
between: every ``interval`` seconds one process of each instance (the holder of an
:class:`~cache_backends.background.InstanceLock`, where one is given)

1. reads the cache's entry (its pointer: one small item whatever the value's
   size), *then* the database's version (one one-row query). In that order, a
   write that commits in between makes the database look newer (a harmless
   repair at its version), never the cache look ahead of it;
2. stops there when the two agree, writing nothing: an idle fleet pays one
   small read and one query per instance and interval, no write;
3. otherwise takes the repair lease, ``cache.add(<key>:reconcile, token,
   interval)`` (the same atomic "add if absent" loads use; never released, so
   that one instance repairs a given lag: the others find it held), and acts on
   what it found:

   - the cache holds the database's version: in sync, nothing to do;
   - a tombstone or stale mark at (or past) it: fenced, a reload is due, nothing
     to repair (readers or a refresh reload it);
   - nothing (expired, or never loaded): a tombstone at the database's version,
     so that a slow load of an older snapshot cannot land as fresh;
   - an older version: behind, ``repair(version)`` (the categories policy applies
     its strategy: a tombstone, a reload, or a stale mark and a refresh);
   - a newer version than the database's: the database went back (restored from
     a backup), and the fence would refuse every load from it: the entry is
     forgotten, so that the next read loads and stores the database's list.

Every store is fenced by rank (``cache_backends.versioned``), so a reconciler
acting on what it read a moment ago can never replace a newer entry.

:meth:`Reconciler.wake` reconciles at once, without waiting for the interval and
without the fleet lease (a change notification names no version, and repairs
are idempotent): for a listener that heard of a change, or that has just
(re)connected and may have missed some. No Flask here.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from enum import StrEnum

from cache_backends.background import (
    STOP_TIMEOUT_SECONDS,
    BackgroundWorker,
    InstanceLock,
    jittered,
)
from cache_backends.loader import VersionedLoader
from cache_backends.strict import CacheUnavailable
from cache_backends.versioned import VersionedEntry

logger = logging.getLogger(__name__)

RECONCILE_LEASE_SUFFIX = ":reconcile"
#: Each wait is up to this fraction shorter than the interval, so that the processes
#: of a fleet started together do not all try for the lease in the same instant.
INTERVAL_JITTER_FRACTION = 0.1


class ReconcileOutcome(StrEnum):
    """What one reconcile found (the ``outcome`` label of its metric)."""

    #: The cache holds a value loaded at the database's version.
    IN_SYNC = "in_sync"
    #: A tombstone or stale mark at (or past) the database's version: already fenced.
    FENCED = "fenced"
    #: Nothing cached: a tombstone was left at the database's version.
    ABSENT = "absent"
    #: The cache was behind the database: repaired by the strategy.
    BEHIND = "behind"
    #: The cache was ahead of the database (restored to an older version): forgotten.
    AHEAD = "ahead"
    #: The cache needed a repair, and another process holds the repair lease: it repairs.
    LEASE_HELD = "lease_held"
    #: The cache or the database could not be asked, or the repair did not land.
    FAILED = "failed"


#: The outcomes that changed the cache.
REPAIRS = frozenset({ReconcileOutcome.ABSENT, ReconcileOutcome.BEHIND, ReconcileOutcome.AHEAD})
#: The outcomes after which the cache is known to be coherent with the database.
COHERENT = frozenset(
    {ReconcileOutcome.IN_SYNC, ReconcileOutcome.FENCED, ReconcileOutcome.ABSENT} | REPAIRS
)


def coherence_of(entry: VersionedEntry | None, database_version: int) -> ReconcileOutcome:
    """What ``entry`` is to a database at ``database_version``, before any repair.

    IN_SYNC, FENCED (a tombstone or stale mark at that version), ABSENT, BEHIND
    or AHEAD (fenced, or loaded, past the database: it went back).
    """
    if entry is None:
        return ReconcileOutcome.ABSENT
    if max(entry.fence, entry.version) > database_version:
        return ReconcileOutcome.AHEAD
    if entry.fence < database_version:
        return ReconcileOutcome.BEHIND
    complete = entry.has_value and entry.version >= entry.fence
    return ReconcileOutcome.IN_SYNC if complete else ReconcileOutcome.FENCED


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """One reconcile: what it found and did.

    :param database_version: the database's version (None: not read).
    :param cached_version: the version the cache was fenced at when read (None:
        nothing cached, or not read).
    """

    outcome: ReconcileOutcome
    database_version: int | None = None
    cached_version: int | None = None

    @property
    def lag(self) -> int | None:
        """Versions the cache was behind the database (negative: ahead); None if unknown.

        Nothing cached lags nothing: the next read loads the database's list.
        """
        if self.database_version is None or self.outcome is ReconcileOutcome.FAILED:
            return None
        if self.cached_version is None:
            return 0
        return self.database_version - self.cached_version

    @property
    def unrepaired_version(self) -> int | None:
        """The database's version when the cache was found behind it and not repaired (the
        cache failed at the lease or the repair); None otherwise."""
        if (
            self.outcome is not ReconcileOutcome.FAILED
            or self.database_version is None
            or self.cached_version is None
            or self.cached_version >= self.database_version
        ):
            return None
        return self.database_version


@dataclass(eq=False)
class Reconciler:
    """Keep ``loader``'s key coherent with the database; see the module docstring.

    :param loader: the key's loader (its cache, key and fenced writes).
    :param database_version: the database's version now (a one-row read).
    :param repair: ``repair(version)`` brings a cache that is behind to
        ``version`` (the caller's strategy); True if it landed, False if refused
        (something newer is there); raises CacheUnavailable if it did not land.
    :param interval: seconds between reconciles, and the repair lease's
        length; 0 or less: no thread (:meth:`reconcile_once` still works).
    :param on_run: called with each :class:`Reconciliation` (metrics).
    :param election: the instance's lock: the thread's rounds run only in the
        process that holds it (a woken round runs anyway: the wake is this
        process's news). None: every process's thread runs its rounds.
    """

    loader: VersionedLoader
    _: KW_ONLY
    database_version: Callable[[], int]
    repair: Callable[[int], bool]
    interval: float
    on_run: Callable[[Reconciliation], None] = lambda reconciliation: None
    election: InstanceLock | None = None

    def __post_init__(self) -> None:
        self.lease_key = self.loader.key + RECONCILE_LEASE_SUFFIX
        # Whole seconds (a cache timeout), at least 1 (0 would mean "never expires").
        self.lease_seconds = max(1, math.ceil(self.interval))
        self._running = threading.Lock()  # one reconcile at a time in this process
        self._worker = BackgroundWorker(
            f"reconciler-{self.loader.key}", self._round, first_wait=self._next_wait
        )

    # -- one reconcile ---------------------------------------------------------------

    def reconcile_once(self, *, fleet_lease: bool = True) -> Reconciliation:
        """Compare, and repair what disagrees; ``fleet_lease``: only under the repair lease."""
        with self._running:
            reconciliation = self._reconcile(fleet_lease)
        try:
            self.on_run(reconciliation)
        except Exception:  # metrics must never stop the reconciler
            logger.exception("reconciler observer failed")
        return reconciliation

    def _reconcile(self, fleet_lease: bool) -> Reconciliation:
        key = self.loader.key
        try:
            entry = self.loader.pointer()
        except Exception as error:  # CacheUnavailable, or a backend without a strict interface
            self._cache_failed(error)
            return Reconciliation(ReconcileOutcome.FAILED)
        cached = None if entry is None else max(entry.fence, entry.version)
        try:
            database = self.database_version()
        except Exception:  # the database's own errors are many; it is logged and retried
            logger.exception("reconcile of %r: the database version could not be read", key)
            return Reconciliation(ReconcileOutcome.FAILED, cached_version=cached)
        found = Reconciliation(ReconcileOutcome.FAILED, database, cached)
        outcome = coherence_of(entry, database)
        if outcome not in REPAIRS:
            return Reconciliation(outcome, database, cached)
        try:
            if fleet_lease and not self.loader.cache.add(
                self.lease_key, uuid.uuid4().hex, timeout=self.lease_seconds
            ):
                return Reconciliation(ReconcileOutcome.LEASE_HELD, database, cached)
        except Exception as error:
            self._cache_failed(error)
            return found
        try:
            if outcome is ReconcileOutcome.ABSENT:
                self.loader.invalidate(database, strict=True)
            elif outcome is ReconcileOutcome.AHEAD:
                logger.warning(
                    "reconcile of %r: the cache is at version %s, the database at %d "
                    "(restored from an older backup?): forgetting the entry",
                    key,
                    cached,
                    database,
                )
                self.loader.forget(strict=True)
            elif outcome is ReconcileOutcome.BEHIND:
                logger.warning(
                    "reconcile of %r: the cache is at version %s, behind the database's %d: "
                    "repairing",
                    key,
                    cached,
                    database,
                )
                self.repair(database)
        except CacheUnavailable as error:
            logger.warning("reconcile of %r: the repair did not land: %s", key, error)
            return found
        return Reconciliation(outcome, database, cached)

    def _cache_failed(self, error: Exception) -> None:
        # The transport logged the failure itself; every interval of an outage need not.
        level = logging.INFO if isinstance(error, CacheUnavailable) else logging.WARNING
        logger.log(
            level, "reconcile of %r: the cache could not be asked: %s", self.loader.key, error
        )

    # -- the thread ----------------------------------------------------------------------

    def wake(self) -> None:
        """Reconcile now, on the reconciler's thread, without the fleet lease. Thread-safe.

        For a change notification, and after every (re)connect of a listener
        (notifications sent while it was away are lost). A wake before the thread
        starts is kept: its first reconcile comes at once. With the interval at 0
        there is no thread: call :meth:`reconcile_once` (``fleet_lease=False``).
        """
        self._worker.wake()

    def start(self) -> bool:
        """Start the daemon thread (idempotent); False if the interval turns it off."""
        if self.interval <= 0:
            return False
        self._worker.start()
        return True

    @property
    def running(self) -> bool:
        return self._worker.running

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Stop the thread (for good) and give up the election; True once it has ended."""
        stopped = self._worker.stop(timeout)
        if stopped and self.election is not None:
            self.election.release()
        return stopped

    def _next_wait(self) -> float:
        return jittered(self.interval, INTERVAL_JITTER_FRACTION)

    def _round(self, woken: bool) -> float:
        if woken or self.election is None or self.election.acquire():
            self.reconcile_once(fleet_lease=not woken)
        return self._next_wait()
