"""What the categories cache holds, under which key, for how long, and what a write does to it.

The cached value is the list's HTTP representation (``representation.py``: the
JSON body, its gzip form and their ETags, built once per load) under one key, so
a hit costs one cache read and no database work, encoding or hashing. The
mechanics (one load per expiry fleet-wide, versioned entries, the stale
window) are ``cache_backends.loader``'s; this module only says what to load
and which strategy a write follows (``CATEGORIES_CACHE_STRATEGY``):

- ``invalidate``: a tombstone at the write's version; the next GET anywhere
  reloads (once, fleet-wide);
- ``write-through``: the list read back after the commit, at its version;
  the next GET anywhere is a hit, and the write pays the reload;
- ``refresh-async``: the cached list is marked stale and one background
  refresh reloads it; the write does not wait, and GETs meanwhile answer at
  once with the previous list as ``STALE``.

Every cache write is fenced by the catalogue version, so a slow reader's older
list, or two writers' read-backs in the wrong order, can never replace a newer
one. The cache is an optimisation, never a dependency: any backend error is
logged and the database answers.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app

from cache_backends.loader import CacheStatus, Load, LoaderEvent, VersionedLoader
from cache_backends.near import NearCache
from cache_backends.owed import OwedOutcome, OwedUpdates
from cache_backends.reconciler import (
    COHERENT,
    REPAIRS,
    Reconciler,
    Reconciliation,
    VersionAfterRecovery,
    coherence_of,
)
from cache_backends.refresher import BackgroundRefresher
from cache_backends.strict import CacheUnavailable, on_recovery, request_path
from cache_backends.versioned import VersionedEntry
from ecommerce.categories import repository
from ecommerce.categories.changes import CatalogueListener, listener_for
from ecommerce.categories.representation import Representation
from ecommerce.config import CacheStrategy
from ecommerce.extensions import cache
from ecommerce.metrics import (
    CACHE_COHERENT_TIMESTAMP,
    CACHE_LOADER_EVENTS,
    CACHE_OWED_PENDING,
    CACHE_OWED_UPDATES,
    CACHE_RECONCILE_REPAIRS,
    CACHE_RECONCILES,
    CACHE_VERSION_LAG,
    DB_LOADS,
)
from ecommerce.observability import record_cache_error

__all__ = ["CacheStatus", "after_categories_changed", "read_categories"]

#: The whole list lives under one key (the backend adds CACHE_KEY_PREFIX).
CATEGORIES_CACHE_KEY = "categories:all"
#: The metrics label of this cache.
CACHE_NAME = "categories"
#: Each entry lives between 90 % and 100 % of CATEGORIES_CACHE_TTL, so entries
#: written together (every instance after a deploy) do not all expire together
#: and send every instance to the database in the same second.
TTL_JITTER_FRACTION = 0.1
#: One list, one refresh at a time; a few queued cover a burst of writes.
REFRESH_WORKERS = 1
MAX_PENDING_REFRESHES = 4
#: Seconds a worker's shutdown waits for queued refreshes (gunicorn's graceful_timeout is 30).
DRAIN_TIMEOUT_SECONDS = 10.0
_EXTENSION_NAME = "categories_cache"
#: Where init_app keeps the owed updates and the reconciler of the app's loader.
_COHERENCE_EXTENSION_NAME = "categories_cache_coherence"
#: After the cache recovers from an outage, entries older than the database's version
#: are reloaded for this many reconcile intervals: long enough for the reconciler (or
#: the writers' owed updates) to have repaired the shared cache.
RECOVERY_FLOOR_INTERVALS = 3


def jittered_ttl(ttl: int) -> int:
    """``ttl`` minus random jitter; the setting stays the maximum staleness."""
    return ttl - random.randint(0, int(ttl * TTL_JITTER_FRACTION))


def categories_ttl() -> int:
    """CATEGORIES_CACHE_TTL minus random jitter, for the running app."""
    return jittered_ttl(current_app.config["CATEGORIES_CACHE_TTL"])


def _count_event(event: LoaderEvent) -> None:
    CACHE_LOADER_EVENTS.labels(CACHE_NAME, event.value).inc()


def init_app(app: Flask) -> None:
    """Build the app's loader for the categories key; call after ``cache.init_app``."""
    refresher = BackgroundRefresher(REFRESH_WORKERS, MAX_PENDING_REFRESHES)
    app.extensions[_EXTENSION_NAME] = VersionedLoader(
        app.extensions["cache"][cache],
        CATEGORIES_CACHE_KEY,
        ttl=functools.partial(jittered_ttl, app.config["CATEGORIES_CACHE_TTL"]),
        stale_seconds=app.config["CATEGORIES_CACHE_STALE_WHILE_REVALIDATE"],
        lease_seconds=app.config["CATEGORIES_CACHE_LEASE_SECONDS"],
        refresher=refresher,
        on_event=_count_event,
        on_error=record_cache_error,
    )
    _init_coherence(app)


def _loader() -> VersionedLoader:
    loader: VersionedLoader = current_app.extensions[_EXTENSION_NAME]
    return loader


def drain_background_refreshes(app: Flask, timeout: float = DRAIN_TIMEOUT_SECONDS) -> bool:
    """Let queued refreshes finish (a worker's graceful shutdown); True if all did.

    gunicorn.conf.py calls this for whatever app a worker served: one without the
    categories cache (the HTTP benchmark's bare Flask app) has nothing to drain.

    The reconciler stops, and updates still owed get one last attempt; what is
    still owed after it is logged and counted as abandoned (the reconciler of
    another process repairs it), and does not make this answer False: it is
    about the refreshes this worker accepted.
    """
    loader: VersionedLoader | None = app.extensions.get(_EXTENSION_NAME)
    coherence: _Coherence | None = app.extensions.get(_COHERENCE_EXTENSION_NAME)
    if coherence is not None:
        if coherence.listener is not None:
            coherence.listener.stop()
        coherence.reconciler.stop()
        coherence.owed.drain()
    return loader is None or loader.refresher is None or loader.refresher.drain(timeout)


def load_categories_from_db() -> tuple[Representation, int]:
    """The list, encoded as it is served, and the catalogue version it is the state of.

    Encoding, compressing and tagging happen here, once per load, so that no hit
    pays for them (at 10,000 categories, ~20 ms of CPU here against a few
    milliseconds per hit before).
    """
    DB_LOADS.inc()  # the work the cache exists to avoid: its rate is the cache's failure rate
    categories, version = repository.list_categories_at_version()
    return Representation.of(categories), version


def _load_for(app: Flask) -> Load:
    """``load_categories_from_db`` in an app context of its own.

    Its own context, so a background refresh (no request, another thread) gets
    a database session of its own just as a request does.
    """

    def load() -> tuple[Representation, int]:
        with app.app_context():
            return load_categories_from_db()

    return load


def read_categories() -> tuple[Representation, CacheStatus]:
    """The category list's representation and where it came from (HIT, MISS or STALE).

    During a roll-out the cache may still hold a plain list written by the
    release before this one (the same key, so that its writes' tombstones keep
    fencing us): it is encoded here, per request, until a load replaces it.
    """
    loaded = _loader().get(_load_for(current_app._get_current_object()))
    value = loaded.value
    if not isinstance(value, Representation):
        value = Representation.of(value)
    return value, loaded.status


def after_categories_changed(version: int) -> None:
    """Bring the cache in line with a write committed at ``version``, per the strategy.

    Tried at once within the backend's request-path budget (DynamoDB:
    ``CACHE_DYNAMODB_WRITE_TIMEOUT``, no retry), so that a partition costs the
    answer well under a second; an update that does not land (the cache failed,
    or its circuit is open) is owed and retried in the background until it does
    (``cache_backends.owed``), and the reconciler covers whatever this process
    cannot keep. Fenced by version either way: a late retry never wins over a
    newer write.
    """
    app: Flask = current_app._get_current_object()
    read_back = _read_back(app)
    apply = functools.partial(_apply_strategy, app, version, read_back)
    owed = _coherence(app).owed
    with request_path():
        try:
            apply()
        except CacheUnavailable as error:
            owed.owe(CATEGORIES_CACHE_KEY, version, apply, reason=error)
            return
    owed.settle(CATEGORIES_CACHE_KEY, version)


def _strategy(app: Flask) -> CacheStrategy:
    return CacheStrategy(app.config["CATEGORIES_CACHE_STRATEGY"])


def _read_back(app: Flask) -> tuple[Representation, int] | None:
    """The list write-through stores, read after the commit; None for the other
    strategies, or if the database failed (a tombstone is left instead).

    Read once per write: an owed write-through retries with this list, fenced by
    its version, rather than reloading on every retry.
    """
    if _strategy(app) != CacheStrategy.WRITE_THROUGH:
        return None
    try:
        return _load_for(app)()
    except Exception:  # the write is committed: its answer must not become a 500
        app.logger.exception("write-through reload failed; leaving a tombstone")
        return None


def _apply_strategy(app: Flask, version: int, read_back: tuple[Representation, int] | None) -> bool:
    """The strategy's cache update for ``version``; True if it landed, False if refused.

    Raises CacheUnavailable when the cache could not be asked (the caller owes it).
    A write-through the backend refuses (a newer list is cached; a value too large),
    or a stale mark that does not take, falls back to a tombstone, so that no
    instance keeps serving the list without the write until the TTL.
    """
    loader: VersionedLoader = app.extensions[_EXTENSION_NAME]
    strategy = _strategy(app)
    if strategy == CacheStrategy.WRITE_THROUGH and read_back is not None:
        categories, loaded_version = read_back
        if loader.store(categories, loaded_version, strict=True):
            return True
        app.logger.warning(
            "write-through of %r not stored (a newer list is cached, or it is too large); "
            "leaving a tombstone",
            CATEGORIES_CACHE_KEY,
        )
    elif strategy == CacheStrategy.REFRESH_ASYNC and loader.mark_stale(version, strict=True):
        loader.refresh_in_background(_load_for(app))
        return True
    return loader.invalidate(version, strict=True)


def _repair(app: Flask, version: int) -> bool:
    """The reconciler's repair of a cache behind ``version``: the write path's strategy.

    write-through reloads (one load for the fleet: one process reconciles), so the
    repaired cache is a HIT again rather than a miss for the next reader.
    """
    read_back = _read_back(app)
    landed = _apply_strategy(app, version, read_back)
    _coherence(app).owed.settle(CATEGORIES_CACHE_KEY, version)
    return landed


# -- coherence: owed updates and the reconciler --------------------------------------


@dataclass(frozen=True, slots=True)
class _Coherence:
    """The app's owed updates and reconciler for the categories key."""

    owed: OwedUpdates
    reconciler: Reconciler
    #: The instance's LISTEN on the catalogue channel; None without notifications (SQLite).
    listener: CatalogueListener | None


def _count_owed(key: str, outcome: OwedOutcome) -> None:
    CACHE_OWED_UPDATES.labels(CACHE_NAME, outcome.value).inc()


def _set_owed_pending(pending: int) -> None:
    CACHE_OWED_PENDING.labels(CACHE_NAME).set(pending)


def _count_reconcile(reconciliation: Reconciliation) -> None:
    outcome = reconciliation.outcome
    CACHE_RECONCILES.labels(CACHE_NAME, outcome.value).inc()
    if outcome in REPAIRS:
        CACHE_RECONCILE_REPAIRS.labels(CACHE_NAME, outcome.value).inc()
    if reconciliation.lag is not None:
        CACHE_VERSION_LAG.labels(CACHE_NAME).set(reconciliation.lag)
    if outcome in COHERENT:
        CACHE_COHERENT_TIMESTAMP.labels(CACHE_NAME).set_to_current_time()


def _floor(
    owed: OwedUpdates, heard: Callable[[], int | None], after_recovery: VersionAfterRecovery
) -> int:
    """The lowest version of the list this process may serve; 0 if no newer one is known.

    A version this process owes the cache (its own write, not landed yet), the
    database's version as the instance's listener last heard it, or as read when
    the cache came back from an outage (others' writes may have failed meanwhile):
    an entry older than any of them is reloaded, not served.
    """
    return max(owed.version_owed(CATEGORIES_CACHE_KEY), heard() or 0, after_recovery())


def _heard_floor(heard: Callable[[], int | None], key: str) -> int | None:
    """The near-cache's floor: the heard version, for the categories key only."""
    return heard() if key == CATEGORIES_CACHE_KEY else None


def _database_version_for(app: Flask) -> int:
    with app.app_context():
        return repository.current_catalogue_version()


def _init_coherence(app: Flask) -> None:
    """Owed updates and the reconciler for the app's loader; threads start lazily.

    The owed-update thread starts with the first debt. The reconciler's starts
    with the app's first request (gunicorn runs create_app in each worker, where
    gevent has patched threading), so that ``flask`` commands run none; not under
    TESTING, where tests call ``reconcile_once()`` themselves. Both stop in
    :func:`drain_background_refreshes` (a worker's shutdown).
    """
    loader: VersionedLoader = app.extensions[_EXTENSION_NAME]
    owed = OwedUpdates(f"{CACHE_NAME} cache", on_outcome=_count_owed, on_pending=_set_owed_pending)
    reconciler = Reconciler(
        loader,
        database_version=functools.partial(_database_version_for, app),
        repair=functools.partial(_repair, app),
        interval=app.config["CATEGORIES_CACHE_RECONCILE_SECONDS"],
        on_run=_count_reconcile,
    )
    # On PostgreSQL, the database's own change events wake the reconciler at once, and
    # raise the floor below which no copy of the list is served (changes.py).
    listener = listener_for(app, reconciler.wake) if reconciler.interval > 0 else None
    heard: Callable[[], int | None] = listener.board.read if listener else lambda: None
    app.extensions[_COHERENCE_EXTENSION_NAME] = _Coherence(owed, reconciler, listener)
    # A list older than a write this process owes is not served, even once the cache
    # answers again before the retry lands (the breaker's probe is a read); nor one
    # older than the database was heard at.
    after_recovery = VersionAfterRecovery(
        functools.partial(_database_version_for, app),
        hold_seconds=RECOVERY_FLOOR_INTERVALS * max(reconciler.interval, 1),
    )
    loader.floor = functools.partial(_floor, owed, heard, after_recovery)
    backend = app.extensions["cache"][cache]
    if listener is not None and isinstance(backend, NearCache):
        backend.serve_no_copy_below(functools.partial(_heard_floor, heard))
    on_recovery(loader.cache, owed.wake)  # the breaker's first good probe: retry now
    on_recovery(loader.cache, after_recovery.cache_recovered)
    if reconciler.interval > 0 and not app.testing:

        @app.before_request
        def start_reconciler() -> None:
            reconciler.start()  # idempotent: a lock-free check once started
            if listener is not None:
                listener.start()


def _coherence(app: Flask) -> _Coherence:
    coherence: _Coherence = app.extensions[_COHERENCE_EXTENSION_NAME]
    return coherence


def reconciler(app: Flask) -> Reconciler:
    """The app's reconciler: tests drive ``reconcile_once()``; a listener calls ``wake()``."""
    return _coherence(app).reconciler


def catalogue_listener(app: Flask) -> CatalogueListener | None:
    """The app's change listener, None on SQLite (tests start it; gunicorn workers on
    their first request)."""
    return _coherence(app).listener


def owed_updates(app: Flask) -> OwedUpdates:
    """The app's owed cache updates (tests, diagnostics)."""
    return _coherence(app).owed


def coherence_report() -> dict[str, object]:
    """The database's version against the cache's, for /readyz; a cache outage is reported.

    Raises the database's errors (readiness depends on it); never the cache's.
    """
    app: Flask = current_app._get_current_object()
    database_version = repository.current_catalogue_version()
    report: dict[str, object] = {
        "database_version": database_version,
        "owed": _coherence(app).owed.pending().get(CATEGORIES_CACHE_KEY),
    }
    try:
        entry = _loader().current_entry()
    except CacheUnavailable:
        return {**report, "cached_version": None, "state": "unknown: the cache is unavailable"}
    cached_version = None if entry is None else max(entry.fence, entry.version)
    state = coherence_of(entry, database_version).value
    return {**report, "cached_version": cached_version, "state": state}


def forget_cached_categories() -> None:
    """Drop the cached list whatever its version (a new database: versions start again)."""
    _loader().forget()


def cached_entry() -> VersionedEntry | None:
    """What the cache holds under the categories key right now (tests, diagnostics)."""
    entry = _loader().cache.get(CATEGORIES_CACHE_KEY)
    return entry if isinstance(entry, VersionedEntry) else None
