"""What the categories cache holds, under which key, for how long: the app's side of its region.

The cached value is the list's HTTP representation (``representation.py``: the
JSON body, its gzip form and their ETags, built once per load) under one key, so
a hit costs one cache read and no database work, encoding or hashing. Everything
else (one load per expiry fleet-wide, fences, the strategies, owed updates, the
reconciler) is the library's :class:`~cache_backends.region.Region`; this module
hands it what only the app knows: the key, the load, the database's version, the
settings, and on PostgreSQL the instance's change listener (``changes.py``).
"""

from __future__ import annotations

from flask import Flask, current_app, request

from cache_backends.loader import Loaded
from cache_backends.region import Region
from ecommerce.categories import repository
from ecommerce.categories.changes import listener_for
from ecommerce.categories.representation import Representation
from ecommerce.extensions import cache
from ecommerce.metrics import DB_LOADS

#: The whole list lives under one key (the backend adds CACHE_KEY_PREFIX).
CATEGORIES_CACHE_KEY = "categories:all"
#: The metrics label of this cache.
CACHE_NAME = "categories"
#: The WSGI environ key under which the hit path hands Flask a read that raised.
FAILED_READ_KEY = "ecommerce.categories.failed_read"
_EXTENSION_NAME = "categories_cache"


def load_categories_from_db() -> tuple[Representation, int]:
    """The list, encoded as it is served, and the catalogue version it is the state of.

    Encoding, compressing and tagging happen here, once per load, so that no hit
    pays for them (at 10,000 categories, ~20 ms of CPU here against a few
    milliseconds per hit before).
    """
    DB_LOADS.inc()  # the work the cache exists to avoid: its rate is the cache's failure rate
    categories, version = repository.list_categories_at_version()
    return Representation.of(categories), version


def init_app(app: Flask) -> None:
    """Build the categories region on the app's cache; call after ``cache.init_app``.

    Its threads start with the app's first request (gunicorn runs create_app in
    each worker, where gevent has patched threading), so ``flask`` commands run
    none; not under TESTING, where tests drive ``reconcile_once()`` themselves.
    """

    # The region calls both on threads of its own (refreshes, the reconciler): each
    # gets an app context, and so a database session, of its own.
    def load() -> tuple[Representation, int]:
        with app.app_context():
            return load_categories_from_db()

    def database_version() -> int:
        with app.app_context():
            return repository.current_catalogue_version()

    region = Region(
        app.extensions["cache"][cache],
        CATEGORIES_CACHE_KEY,
        name=CACHE_NAME,
        load=load,
        database_version=database_version,
        strategy=app.config["CATEGORIES_CACHE_STRATEGY"],
        ttl=app.config["CATEGORIES_CACHE_TTL"],
        stale_seconds=app.config["CATEGORIES_CACHE_STALE_WHILE_REVALIDATE"],
        stale_if_error=app.config["CATEGORIES_CACHE_STALE_IF_ERROR"],
        lease_seconds=app.config["CATEGORIES_CACHE_LEASE_SECONDS"],
        reconcile_seconds=app.config["CATEGORIES_CACHE_RECONCILE_SECONDS"],
        instance_dir=app.config["CATALOGUE_EVENTS_DIR"] or app.instance_path,
        near_ttl_while_heard=app.config["CACHE_NEAR_TTL_WHILE_LISTENING"],
    )
    reconciling = app.config["CATEGORIES_CACHE_RECONCILE_SECONDS"] > 0
    # On PostgreSQL the database's own change events reach the region at once.
    listener = listener_for(app, region.changed) if reconciling else None
    if listener is not None:
        region.follow(listener)
    app.extensions[_EXTENSION_NAME] = region
    if reconciling and not app.testing:
        app.before_request(region.start)


def categories_region(app: Flask | None = None) -> Region:
    """The categories region of ``app`` (default: the running app)."""
    region: Region = (app or current_app).extensions[_EXTENSION_NAME]
    return region


def read_categories() -> tuple[Representation, str]:
    """The category list's representation and where it came from (HIT, MISS or STALE).

    A read the list's hit path (``hit_path.py``) already tried and that raised is not
    tried again: its error is raised here, for Flask's handlers to answer, so a failing
    load costs the database once per request.
    """
    failed: Exception | None = request.environ.pop(FAILED_READ_KEY, None)
    if failed is not None:
        raise failed
    return represent(categories_region().get())


def represent(loaded: Loaded) -> tuple[Representation, str]:
    """A region's answer as the list's representation and its cache status.

    During a roll-out the cache may still hold a plain list written by the
    release before this one (the same key, so that its writes' tombstones keep
    fencing us): it is encoded here, per request, until a load replaces it.
    """
    value = loaded.value
    if not isinstance(value, Representation):
        value = Representation.of(value)
    return value, loaded.status


def after_categories_changed(version: int) -> None:
    """Bring the cache in line with a write committed at ``version`` (the region's strategy)."""
    categories_region().after_write(version)


def stop_categories_cache(app: Flask) -> bool:
    """A worker's graceful stop: True if the background refreshes it queued all finished.

    gunicorn.conf.py calls this for whatever app a worker served: one without the
    categories cache (the HTTP benchmark's bare Flask app) has nothing to stop.
    """
    region: Region | None = app.extensions.get(_EXTENSION_NAME)
    return region is None or region.stop()
