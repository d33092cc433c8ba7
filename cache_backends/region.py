"""One versioned key, owned end to end: the app's only handle on a cached value.

In the spirit of dogpile.cache's ``CacheRegion``: the app hands in what only it
knows (the key, how to load the value and at which database version, how to read
that version, the strategy a write follows) and gets back one object. Everything
between a request and the database lives here, written once.

**A read** (:meth:`Region.get`), in order:

1. the entry from the cache (a near copy, or the shared cache);
2. compared with :class:`NewestVersion`, what this process knows: an entry
   fenced below a version it knows of (its own write not landed yet, a change the
   instance heard, the database's version after an outage) is loaded again, and
   so is a value older than one it has already served (reads never go back);
3. fresh: ``HIT``; in its stale window or marked stale: ``STALE``, refreshed
   once in the background; absent or a tombstone: ``MISS``, loaded once per
   process and once per fleet (``loader.py``: the lease and the single flight).

**A write** (:meth:`Region.after_write`, after the commit), in order:

1. the strategy, within the backend's request-path budget: ``invalidate``
   leaves a tombstone at the write's version, ``write-through`` stores the list
   read back after the commit, ``refresh-async`` marks the value stale and
   refreshes it in the background;
2. an update that did not land is owed and retried until it does (``owed.py``);
3. the reconciler (``reconciler.py``) compares the database's version with the
   cache's every few seconds, or at once when a change is heard, and repairs
   what is behind, whatever happened to the writer.

Every store is fenced by the version (``versioned.py``): an older snapshot never
replaces a newer one. What the region does is sent as named signals
(``signals.py``) for metrics and logs. No Flask here.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from cache_backends import signals
from cache_backends.background import InstanceLock, SharedVersion
from cache_backends.bodies import Sealer, SharedBodies
from cache_backends.body_store import BodyStore
from cache_backends.loader import CacheStatus, Load, Loaded, LoaderEvent, StaleMark, VersionedLoader
from cache_backends.near import WhileLive
from cache_backends.newest import NewestVersion, VersionSource
from cache_backends.owed import OwedOutcome, OwedUpdates
from cache_backends.reconciler import COHERENT, REPAIRS, Reconciler, Reconciliation, coherence_of
from cache_backends.refresher import BackgroundRefresher
from cache_backends.shared import SharedCopy
from cache_backends.strict import CacheUnavailable, on_recovery, request_path, strict_interface
from cache_backends.versioned import VersionedEntry, pointer_bytes, pointer_from_bytes

__all__ = ["CacheStatus", "Loaded", "NewestVersion", "Region", "Strategy", "VersionSource"]

logger = logging.getLogger(__name__)

#: Each entry lives between 90 % and 100 % of the TTL, in whole seconds (a TTL under
#: 10 s is not jittered), so that entries written together (every instance after a
#: deploy) do not all expire in the same second.
TTL_JITTER_FRACTION = 0.1
#: One key, one refresh at a time; a few queued cover a burst of writes.
REFRESH_WORKERS = 1
MAX_PENDING_REFRESHES = 4
#: Seconds a process's shutdown waits for queued refreshes (gunicorn's graceful_timeout is 30).
DRAIN_TIMEOUT_SECONDS = 10.0
#: After the cache recovers from an outage, entries older than the database's version
#: are loaded again for this many reconcile intervals: long enough for the reconciler
#: (or the writers' owed updates) to have repaired the shared cache.
RECOVERY_HOLD_INTERVALS = 3
#: The reconciler's election file in ``instance_dir``: ``<region name>.reconciler.lock``.
RECONCILER_LOCK_SUFFIX = ".reconciler.lock"
#: The instance's shared near copy of the pointer in ``instance_dir``: ``<name>.near``.
SHARED_COPY_SUFFIX = ".near"
#: The version a write of one of the instance's processes owes (or a reconcile of one of
#: them found the cache behind and could not repair): ``<name>.owed``.
SHARED_OWED_SUFFIX = ".owed"
#: The instance's shared bodies in ``instance_dir``: the folder ``<name>.bodies``.
SHARED_BODIES_SUFFIX = ".bodies"
#: How long the copy a process holds may be served while the cache fails: the TTL's own
#: default, since the database's version is checked meanwhile (``NewestVersion``).
DEFAULT_STALE_IF_ERROR_SECONDS = 300.0
#: How often a process checks the database's version while serving its copy, when the
#: region has no reconcile interval to go by.
DEFAULT_CHECK_SECONDS = 2.0


class Strategy(StrEnum):
    """What a write does to the cached value after its commit."""

    #: Leave a versioned tombstone: the next read anywhere loads (once, fleet-wide).
    INVALIDATE = "invalidate"
    #: Store the value read back after the commit: the next read anywhere is a hit.
    WRITE_THROUGH = "write-through"
    #: Mark the value stale and reload it in the background: the write does not wait,
    #: and reads meanwhile answer at once with the previous value as STALE.
    REFRESH_ASYNC = "refresh-async"


def _beneath(cache: Any, attribute: str) -> Any:
    """``attribute`` of ``cache``, or of the remote under its near layer; None if neither
    has it. What the region asks for: ``codec`` (the cache signs what it stores: bodies are
    then shared through files), ``get_written_once`` (bodies are read at half price) and
    ``set_written_once`` (in copies that spread a change's burst of reads)."""
    while cache is not None:
        found = getattr(cache, attribute, None)
        if found is not None:
            return found
        cache = getattr(cache, "remote", None)
    return None


def jittered_ttl(ttl: float) -> float:
    """``ttl`` less up to TTL_JITTER_FRACTION of it in whole seconds; the setting stays the
    maximum age."""
    return ttl - random.randint(0, int(ttl * TTL_JITTER_FRACTION))


class Region:
    """The app's one handle on ``key`` of ``cache``; see the module docstring.

    :param cache: a Flask-Caching/cachelib backend object (SimpleCache,
        ``DynamoDBCache``, a ``NearCache`` over either...).
    :param key: the key (the backend adds its prefix).
    :param load: ``load() -> (value, version)``: the value and the database version
        it was read at, in one snapshot. Called on any thread (background refreshes,
        the reconciler): it sets up its own context.
    :param database_version: the database's version now (a one-row read).
    :param strategy: what :meth:`after_write` does (:class:`Strategy`).
    :param ttl: seconds a loaded value is fresh (jittered 10 % down); 0: for ever.
    :param stale_seconds: seconds past the TTL the old value is served as ``STALE``
        while one caller refreshes it.
    :param stale_if_error: seconds the copy a process holds is served as ``STALE`` while
        the cache fails (RFC 5861), as long as the database's version, read at most once
        per reconcile interval, has not moved past it: an outage or a throttled table
        costs the database one load per change per process, not one per request. 0: a
        read the cache fails is loaded.
    :param lease_seconds: how long the right to load lasts (longer than a load).
    :param reconcile_seconds: the reconciler's interval; 0: no reconciler thread.
    :param instance_dir: a directory the processes of one instance share (gunicorn's
        workers): one of them, elected by a lock file in it, runs the reconciler's
        rounds for all; behind a ``NearCache`` they share one near copy of the
        key's pointer (``shared.py``), and behind a cache that signs its entries
        (DynamoDB) the bodies they read or store (``bodies.py``), so that these
        costs grow with instances, not processes. None: every process runs its
        rounds and reads the cache itself.
    :param near_ttl_while_heard: seconds a near copy of the key may live while the
        followed source hears every change (``VersionSource.live``): each change ends
        it at once, so this only bounds what reaches the cache without a change of
        the database's version (a stale mark, a repair). Longer than the near-cache's
        TTL, it divides the pointer's reads per instance; 0: the near-cache's TTL.
    :param name: names the region in signals, log lines and threads.
    """

    def __init__(
        self,
        cache: Any,
        key: str,
        *,
        load: Load,
        database_version: Callable[[], int],
        strategy: Strategy | str = Strategy.INVALIDATE,
        ttl: float,
        stale_seconds: float = 0.0,
        stale_if_error: float = DEFAULT_STALE_IF_ERROR_SECONDS,
        lease_seconds: int = 5,
        reconcile_seconds: float = 2.0,
        instance_dir: Path | str | None = None,
        near_ttl_while_heard: float = 0.0,
        name: str | None = None,
    ) -> None:
        self.key = key
        self.near_ttl_while_heard = near_ttl_while_heard
        self.name = name or key
        self.strategy = Strategy(strategy)
        self._load_value = load
        self.database_version = database_version
        self.owed = OwedUpdates(
            f"{self.name} cache", on_outcome=self._owed_outcome, on_pending=self._owed_pending
        )
        self.newest = NewestVersion(
            owed=self.owed,
            key=key,
            database_version=database_version,
            hold_seconds=RECOVERY_HOLD_INTERVALS * max(reconcile_seconds, 1),
            check_seconds=reconcile_seconds if reconcile_seconds > 0 else DEFAULT_CHECK_SECONDS,
        )
        strict = strict_interface(cache)
        #: The bodies' store: the instance's files join it once ``instance_dir`` is shared.
        self._bodies = BodyStore(
            strict,
            read=_beneath(strict, "get_written_once"),
            write=_beneath(strict, "set_written_once"),
        )
        self.loader = VersionedLoader(
            cache,
            key,
            ttl=lambda: jittered_ttl(ttl),
            stale_seconds=stale_seconds,
            lease_seconds=lease_seconds,
            refresher=BackgroundRefresher(REFRESH_WORKERS, MAX_PENDING_REFRESHES),
            on_event=self._loader_event,
            on_error=self._cache_error,
            newest=self.newest,
            stale_if_error=stale_if_error,
            stale_while_behind=self.strategy is Strategy.REFRESH_ASYNC,
            bodies=self._bodies,
        )
        self.reconciler = Reconciler(
            self.loader,
            database_version=database_version,
            repair=self._repair,
            interval=reconcile_seconds,
            on_run=self._reconciled,
            election=None
            if instance_dir is None
            else InstanceLock(Path(instance_dir) / f"{self.name}{RECONCILER_LOCK_SUFFIX}"),
        )
        self.source: VersionSource | None = None
        if instance_dir is not None:
            self._share_with_instance(Path(instance_dir))
        #: The newest version whose strategy this process applied, and when (monotonic).
        self._written = (0, -math.inf)
        self._written_lock = threading.Lock()
        self._started = False
        on_recovery(self.loader.cache, self.owed.wake)  # retry what is owed at once
        on_recovery(self.loader.cache, self.newest.cache_recovered)

    def _share_with_instance(self, instance_dir: Path) -> None:
        """One read of the pointer (behind a near-cache) and of each body (behind a cache that
        signs) per instance, not per process; and a write one process owes is known to all."""
        share = getattr(self.loader.cache, "share", None)
        sealer: Sealer | None = _beneath(self.loader.cache, "codec")
        try:
            if share is not None:
                share(
                    self.key,
                    SharedCopy(
                        instance_dir / f"{self.name}{SHARED_COPY_SUFFIX}",
                        pointer_bytes,
                        pointer_from_bytes,
                    ),
                )
            if sealer is not None:
                self._bodies.shared = SharedBodies(
                    instance_dir / f"{self.name}{SHARED_BODIES_SUFFIX}", sealer
                )
            self.newest.share_owed_with(
                SharedVersion(instance_dir / f"{self.name}{SHARED_OWED_SUFFIX}")
            )
            self._watch()
        except OSError:
            logger.warning(
                "%s: nothing shared in %s: each process reads the cache itself",
                self.name,
                instance_dir,
                exc_info=True,
            )

    # -- reads -----------------------------------------------------------------------

    def get(self) -> Loaded:
        """The value: fresh, stale while it is refreshed, or loaded once (module docstring)."""
        loaded = self.loader.get(self._load)
        self.newest.saw(loaded.version)
        return loaded

    def current_entry(self) -> VersionedEntry | None:
        """What the cache holds now, its value read from its body; None if either is gone.

        Raises CacheUnavailable if the cache could not be asked.
        """
        return self.loader.current_entry()

    # -- writes ----------------------------------------------------------------------

    def after_write(self, version: int) -> None:
        """Bring the cache in line with a write committed at ``version``, per the strategy.

        Tried at once within the backend's request-path budget, so that a partition
        costs the answer well under a second; an update that does not land is owed
        and retried in the background until it does. Never raises the cache's errors:
        the write is committed, and its answer must not become a 500.
        """
        with self._written_lock:
            if version >= self._written[0]:
                self._written = (version, time.monotonic())
        self.newest.wrote(version)
        read_back = self._read_back()

        def retry() -> bool:
            return self._retry_owed(version, read_back)

        with request_path():
            try:
                self._apply_strategy(version, read_back)
            except CacheUnavailable as error:
                self.owed.owe(self.key, version, retry, reason=error)
                self.newest.owe(version)
                return
        self.owed.settle(self.key, version)

    def forget(self) -> bool:
        """Drop the entry whatever its version (a new database: versions start again)."""
        return self.loader.forget()

    # -- coherence -------------------------------------------------------------------

    def reconcile_once(self, *, fleet_lease: bool = True) -> Reconciliation:
        """Compare the database's version with the cache's and repair what is behind."""
        return self.reconciler.reconcile_once(fleet_lease=fleet_lease)

    def follow(self, source: VersionSource) -> None:
        """Hear the database's version from ``source``: it ends near copies below it,
        and its changes should call :meth:`changed`. Started and stopped with the region."""
        self.source = source
        self.newest.follow(source)
        self._watch(WhileLive(source.live, self.near_ttl_while_heard))

    def _watch(self, while_live: WhileLive | None = None) -> None:
        """A near layer ends its copy once the instance knows of a newer version."""
        watch = getattr(self.loader.cache, "watch", None)
        if callable(watch):
            watch(self.key, self.newest.instance_floor, while_live)

    def changed(self) -> None:
        """A change was heard (or the source reconnected): reconcile now. Thread-safe."""
        self.reconciler.wake()

    def report(self) -> dict[str, object]:
        """The database's version against the cache's, for a readiness probe.

        Raises the database's errors (readiness depends on it); never the cache's.
        """
        database_version = self.database_version()
        report: dict[str, object] = {
            "database_version": database_version,
            "owed": self.owed.pending().get(self.key),
        }
        try:
            entry = self.loader.pointer()
        except CacheUnavailable:
            return {**report, "cached_version": None, "state": "unknown: the cache is unavailable"}
        cached_version = None if entry is None else max(entry.fence, entry.version)
        state = coherence_of(entry, database_version).value
        return {**report, "cached_version": cached_version, "state": state}

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the reconciler and the version source (idempotent, cheap once started).

        An app calls it on every request: after the first, one attribute read (asking
        the reconciler's thread whether it is alive took a lock, under gevent too).
        Both starts are idempotent and neither thread is ever started twice, so two
        requests racing through here start each once.
        """
        if self._started:
            return
        self.reconciler.start()
        if self.source is not None:
            self.source.start()
        self._started = True

    def stop(self, timeout: float = DRAIN_TIMEOUT_SECONDS) -> bool:
        """A process's graceful stop: True if every queued refresh finished in time.

        The source and the reconciler stop; updates still owed get one last attempt,
        and what is still owed after it is logged and left to another process's
        reconciler (it does not make this answer False).
        """
        if self.source is not None:
            self.source.stop()
        self.reconciler.stop()
        self.owed.drain()
        refresher = self.loader.refresher
        return refresher is None or refresher.drain(timeout)

    # -- internals -------------------------------------------------------------------

    def _writing(self, version: int) -> bool:
        """Whether this process's own write at (or past) ``version`` is landing or owed."""
        if self.owed.version_owed(self.key) >= version:
            return True
        with self._written_lock:
            written, at = self._written
        return written >= version and time.monotonic() - at < self.loader.lease_seconds

    def _load(self) -> tuple[Any, int]:
        started = time.monotonic()
        value, version = self._load_value()
        self.newest.loaded(version, started)
        return value, version

    def _read_back(self) -> tuple[Any, int] | None:
        """The value write-through stores, read once per write (an owed retry reuses it);
        None for the other strategies, or if the database failed (a tombstone instead)."""
        if self.strategy is not Strategy.WRITE_THROUGH:
            return None
        try:
            return self._load()
        except Exception:  # the write is committed: its answer must not become a 500
            logger.exception("%s: write-through reload failed; leaving a tombstone", self.name)
            return None

    def _apply_strategy(self, version: int, read_back: tuple[Any, int] | None) -> bool:
        """The strategy's update for ``version``; True if it landed, False if refused.

        Raises CacheUnavailable when the cache could not be asked (the caller owes
        it). A write-through the backend refuses (a newer value is cached; a value too
        large) or a stale mark that does not take falls back to a tombstone, so that
        no process keeps serving the value without the write until the TTL.
        """
        if self.strategy is Strategy.WRITE_THROUGH and read_back is not None:
            value, loaded_version = read_back
            if self.loader.store(value, loaded_version, strict=True):
                return True
            logger.warning(
                "%s: write-through not stored (a newer value is cached, or it is too "
                "large); leaving a tombstone",
                self.name,
            )
        elif self.strategy is Strategy.REFRESH_ASYNC:
            mark = self.loader.stale_mark(version, strict=True)
            if mark in (StaleMark.MARKED, StaleMark.TOMBSTONE):
                self.loader.refresh_in_background(self._load)
            if mark is not StaleMark.REFUSED:
                return True  # CURRENT: loaded at (or past) the write already, nothing to refresh
        return self.loader.invalidate(version, strict=True)

    def _retry_owed(self, version: int, read_back: tuple[Any, int] | None) -> bool:
        """An owed update's retry: the strategy for ``version``, with a list read back
        again when the one read at the write is older than a version this process has
        served since, or its instance knows of.

        The fence is the stored entry: a table emptied meanwhile (DynamoDB restarted, the
        table created again) keeps none, and the older list would land there, to be
        served as a HIT by every process that has not seen the newer one.
        """
        if read_back is not None:
            newest = max(self.newest.served(), self.newest.instance_floor())
            if read_back[1] < newest:
                logger.info(
                    "%s: owed write-through of version %d is older than version %d known "
                    "here: reading the list back again",
                    self.name,
                    read_back[1],
                    newest,
                )
                read_back = self._read_back()
        return self._apply_strategy(version, read_back)

    def _repair(self, version: int) -> bool:
        """The reconciler's repair of a cache behind ``version``: the write path's strategy.

        Not when this process's own write at (or past) ``version`` owes it, or applied
        it within the last lease: that update lands or is retried until it does, and a
        second one would race it for the lease (two loads for one change). After a
        lease, a cache still behind is repaired whatever this process wrote.
        """
        if self._writing(version):
            logger.info(
                "%s: version %d is this process's own write: not repaired", self.name, version
            )
            return True
        landed = self._apply_strategy(version, self._read_back())
        self.owed.settle(self.key, version)
        return landed

    # -- signals ---------------------------------------------------------------------

    def _loader_event(self, event: LoaderEvent) -> None:
        signals.loader_event.send(self, name=self.name, event=event)

    def _cache_error(self) -> None:
        signals.cache_error.send(self, name=self.name)

    def _owed_outcome(self, key: str, outcome: OwedOutcome) -> None:
        signals.owed_outcome.send(self, name=self.name, outcome=outcome)

    def _owed_pending(self, pending: int) -> None:
        signals.owed_pending.send(self, name=self.name, pending=pending)

    def _reconciled(self, reconciliation: Reconciliation) -> None:
        outcome = reconciliation.outcome
        signals.reconciled.send(
            self,
            name=self.name,
            outcome=outcome,
            lag=reconciliation.lag,
            repaired=outcome in REPAIRS,
            coherent=outcome in COHERENT,
        )
        unrepaired = reconciliation.unrepaired_version
        if unrepaired is not None:  # what this process holds is older than the database
            self.newest.cache_behind(unrepaired)
