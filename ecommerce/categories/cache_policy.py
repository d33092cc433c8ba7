"""What the categories cache holds, under which key, for how long, and what a write does to it.

The cached value is the JSON-ready list ``[{"id": 1, "name": "Electronics"}, ...]``
under one key, so a hit costs one cache read and no database work. The
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

from flask import Flask, current_app

from cache_backends.loader import CacheStatus, Load, LoaderEvent, VersionedLoader
from cache_backends.refresher import BackgroundRefresher
from cache_backends.versioned import VersionedEntry
from ecommerce.categories import repository
from ecommerce.categories.models import CategoryDict
from ecommerce.config import CacheStrategy
from ecommerce.extensions import cache
from ecommerce.metrics import CACHE_LOADER_EVENTS, DB_LOADS
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


def _loader() -> VersionedLoader:
    loader: VersionedLoader = current_app.extensions[_EXTENSION_NAME]
    return loader


def drain_background_refreshes(app: Flask, timeout: float = DRAIN_TIMEOUT_SECONDS) -> bool:
    """Let queued refreshes finish (a worker's graceful shutdown); True if all did.

    gunicorn.conf.py calls this for whatever app a worker served: one without the
    categories cache (the HTTP benchmark's bare Flask app) has nothing to drain.
    """
    loader: VersionedLoader | None = app.extensions.get(_EXTENSION_NAME)
    return loader is None or loader.refresher is None or loader.refresher.drain(timeout)


def load_categories_from_db() -> tuple[list[CategoryDict], int]:
    """The list and the catalogue version it is the state of."""
    DB_LOADS.inc()  # the work the cache exists to avoid: its rate is the cache's failure rate
    return repository.list_categories_at_version()


def _load_for(app: Flask) -> Load:
    """``load_categories_from_db`` in an app context of its own.

    Its own context, so a background refresh (no request, another thread) gets
    a database session of its own just as a request does.
    """

    def load() -> tuple[list[CategoryDict], int]:
        with app.app_context():
            return load_categories_from_db()

    return load


def read_categories() -> tuple[list[CategoryDict], CacheStatus]:
    """The category list and where it came from (HIT, MISS or STALE)."""
    loaded = _loader().get(_load_for(current_app._get_current_object()))
    return loaded.value, loaded.status


def after_categories_changed(version: int) -> None:
    """Bring the cache in line with a write committed at ``version``, per the strategy.

    A write-through the backend refuses or fails (DynamoDB's 400 KB item limit,
    an outage) falls back to a tombstone, so that no instance keeps serving the
    list without the write until the TTL.
    """
    loader = _loader()
    strategy = current_app.config["CATEGORIES_CACHE_STRATEGY"]
    if strategy == CacheStrategy.WRITE_THROUGH:
        try:
            categories, loaded_version = load_categories_from_db()
        except Exception:  # the write is committed: its answer must not become a 500
            current_app.logger.exception("write-through reload failed; leaving a tombstone")
        else:
            if loader.store(categories, loaded_version):
                return
            current_app.logger.warning(
                "write-through of %r not stored (a newer list is cached, or the cache "
                "failed); leaving a tombstone",
                CATEGORIES_CACHE_KEY,
            )
    elif strategy == CacheStrategy.REFRESH_ASYNC and loader.mark_stale(version):
        loader.refresh_in_background(_load_for(current_app._get_current_object()))
        return
    # Invalidate, or a write-through or stale mark that did not land: the old list must
    # not stay fresh on any instance.
    loader.invalidate(version)


def forget_cached_categories() -> None:
    """Drop the cached list whatever its version (a new database: versions start again)."""
    _loader().forget()


def cached_entry() -> VersionedEntry | None:
    """What the cache holds under the categories key right now (tests, diagnostics)."""
    entry = _loader().cache.get(CATEGORIES_CACHE_KEY)
    return entry if isinstance(entry, VersionedEntry) else None
