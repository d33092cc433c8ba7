"""What one process knows of one key's newest version: the floor a region serves from.

A region (``region.py``) asks :class:`NewestVersion` on every read whether an entry is
new enough to serve. It is raised by this process's unlanded writes, by those its
instance's other processes owe (a small shared file), by the version the instance
heard from the database (a :class:`VersionSource`), and for a while after the cache
recovers from an outage; and by every value this process served. No I/O on the hit
path: each of those is a memory or mapped-file read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Protocol

from cache_backends.background import SharedVersion
from cache_backends.owed import OwedUpdates

logger = logging.getLogger(__name__)


class VersionSource(Protocol):
    """Where a process hears the database's version without asking (PostgreSQL's
    notifications, shared by an instance's processes: ``ecommerce.categories.changes``)."""

    def latest(self) -> int | None:
        """The version last heard; None if nothing yet. Cheap: read on near-cache hits."""

    def live(self) -> bool:
        """Whether every committed change is heard now (the source is connected). Cheap."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(eq=False)
class NewestVersion:
    """The newest version of one key this process knows of; the loader and the near layer read it.

    Two readings of one state, because a stale-while-revalidate answer is allowed to
    lag a write by design but never to lag what this process has already shown:

    - :meth:`known`: no entry *fenced* below it is served. Raised by this process's
      writes that have not landed (a partition hides them from the cache), for a
      while by those of the instance's other processes (a file they share: a
      worker's write is seen by its neighbours within the near-cache's bound, not
      when its retry lands), by the version the instance heard (another instance's
      write, plain SQL), and for a
      while after the cache recovers from an outage by the database's version then
      (others' writes failed too, and their debts are in their memory); and, for as long,
      by the database's version when this process's reconcile found the cache behind it
      and could not repair it (its own calls to the cache fail, its neighbours' may not).
    - :meth:`served`: no *value* older than it is served, as ``HIT`` or ``STALE``.
      Raised by every value this process served, and by the database's
      version after a recovery: a stale mark that lands late, after an outage, on a
      value the outage left behind must not bring back a list older than the ones
      this process showed meanwhile. A load that began after it was raised and
      answers an older version lowers it: the database went back (a restore).
    """

    _: KW_ONLY
    owed: OwedUpdates
    key: str
    database_version: Callable[[], int]
    hold_seconds: float
    check_seconds: float = 2.0
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._source: VersionSource | None = None
        self._lock = threading.Lock()
        self._served = 0
        self._served_raised_at = -math.inf
        self._recovered = threading.Event()
        self._after_recovery = 0
        self._after_recovery_until = -math.inf
        self._database_checked = 0
        self._database_checked_until = -math.inf
        self._unrepaired = 0
        self._unrepaired_until = -math.inf
        self._written = 0
        self._instance_owed: SharedVersion | None = None

    def follow(self, source: VersionSource) -> None:
        self._source = source

    def share_owed_with(self, instance_owed: SharedVersion) -> None:
        """Tell the instance's other processes what this one owes, and hear what they owe."""
        self._instance_owed = instance_owed

    def owe(self, version: int) -> None:
        """A write of this process at ``version`` did not land: the instance's processes
        serve nothing older for ``hold_seconds`` (it lands, or is repaired, meanwhile)."""
        if self._instance_owed is not None:
            self._instance_owed.raise_to(version, time.time() + self.hold_seconds)

    def instance_floor(self) -> int:
        """The newest version the instance knows without asking (no I/O): the one its
        listener heard, or one a process of it owes (or found the cache behind and could not
        repair). What ends a near copy early."""
        heard = 0 if self._source is None else self._source.latest() or 0
        owed = None if self._instance_owed is None else self._instance_owed.read()
        if owed is None or owed[1] <= time.time():
            return heard
        return max(heard, owed[0])

    def known(self) -> int:
        """The lowest fence an entry may carry to be served; 0 when nothing newer is known."""
        owed = self.owed.versions.get(self.key, 0)  # a lookup, not a call: on every hit
        return max(owed, self.instance_floor(), self._recovery(), self._unrepaired_floor())

    def served(self) -> int:
        """The oldest value version this process may still serve."""
        return max(self._served, self._recovery())

    def saw(self, version: int) -> None:
        """A value at ``version`` was served (from the cache, or loaded)."""
        if version > self._served:
            with self._lock:
                if version > self._served:
                    self._served, self._served_raised_at = version, self.clock()

    def loaded(self, version: int, started: float) -> None:
        """A load that began at ``started`` (this clock) answered ``version``.

        It lowers the floor when the database went back; it does not raise it: a
        background refresh's value is not shown until it is stored, and readers meanwhile
        may still be shown the previous one as ``STALE``.
        """
        with self._lock:
            if version < self._served and started > self._served_raised_at:
                logger.warning(
                    "%r: the database answers version %d, older than the %d served here "
                    "(restored from a backup?): serving from it",
                    self.key,
                    version,
                    self._served,
                )
                self._served, self._served_raised_at = version, self.clock()

    def cache_behind(self, database_version: int) -> None:
        """A reconcile read the database at ``database_version``, past what the cache names,
        and could not repair the cache: this process's calls to it fail.

        What the process holds (a near copy read before, or a neighbour's shared copy) is
        then known to be older than the database: for ``hold_seconds`` the instance's
        processes serve nothing fenced below it. A neighbour whose cache answers repairs
        the cache on its next read (it loads, or refreshes, and stores); this one loads
        once. Otherwise both serve the older list as a HIT until the writer's owed update
        lands, or this process's circuit closes, plus a near copy's life.
        """
        with self._lock:
            if database_version >= self._unrepaired:
                self._unrepaired = database_version
                self._unrepaired_until = self.clock() + self.hold_seconds
        if self._instance_owed is not None:
            self._instance_owed.raise_to(database_version, time.time() + self.hold_seconds)

    def _unrepaired_floor(self) -> int:
        """The database's version a failed repair read (:meth:`cache_behind`), while held;
        forgotten after, so that a hit reads no clock for it."""
        unrepaired = self._unrepaired
        if unrepaired and self.clock() >= self._unrepaired_until:
            with self._lock:
                if self.clock() >= self._unrepaired_until:  # not raised again meanwhile
                    self._unrepaired = 0
            return 0
        return unrepaired

    def cache_recovered(self) -> None:
        """The cache answers again after failing (the breaker's first good probe)."""
        self._recovered.set()

    def wrote(self, version: int) -> None:
        """This process committed a write at ``version``: its own copy must show it."""
        self._written = max(self._written, version)

    def still_current(self, version: int) -> bool:
        """Whether a copy at ``version`` may be served while the cache cannot be asked.

        Not when anything newer is known (:meth:`known`, :meth:`served`, this process's
        own writes: read-your-writes), nor when the database has moved past it: its
        version is read at most once per ``check_seconds`` (one one-row query per
        process, not a load), so a change made elsewhere during an outage is served
        within that. A database that cannot
        answer either leaves the copy served: a load would fail too.
        """
        if version < max(self.known(), self.served(), self._written):
            return False
        now = self.clock()
        if now >= self._database_checked_until:
            try:
                self._database_checked = self.database_version()
            except Exception:
                logger.warning("%r: the database's version is unknown: copy kept", self.key)
                return True
            self._database_checked_until = now + self.check_seconds
        return version >= self._database_checked

    def _recovery(self) -> int:
        """The database's version read once after each recovery, held for a while.

        Read by the first read after the recovery (one one-row query per process per
        outage), before it answers: that read must not be the one that serves what the
        outage left behind. Held for ``hold_seconds`` only: by then the reconciler has
        repaired the cache, and a floor kept for ever would load on every read once a
        database is restored to an older version.
        """
        if self._recovered.is_set():
            self._recovered.clear()
            try:
                version = self.database_version()
            except Exception:  # the database answers (or fails) the read itself
                logger.warning("%r: database version after the cache's recovery unknown", self.key)
                self._recovered.set()
                return 0
            self._after_recovery = version
            self._after_recovery_until = self.clock() + self.hold_seconds
        return self._after_recovery if self.clock() < self._after_recovery_until else 0
