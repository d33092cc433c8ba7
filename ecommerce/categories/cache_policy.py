"""What the categories cache holds, under which key, for how long, and what a write does to it.

The cached value is the JSON-ready list ``[{"id": 1, "name": "Electronics"}, ...]``
under one key, so a hit costs one cache read and no database work.

Reads are cache-aside: on a miss, load from the database and store. Writes
follow ``CATEGORIES_CACHE_STRATEGY``: ``invalidate`` deletes the entry (the next
GET anywhere reloads), ``write-through`` stores the list read back from the
database after the commit (the next GET anywhere is already a hit).

Known windows, both bounded by the TTL: a reader that loaded the list before a
write commits can store that older list after the writer's delete; and two
write-through POSTs can store their read-backs in the opposite order.

The cache is an optimisation, never a dependency: any error from any backend
is logged and treated as a miss (reads) or as a skipped update (writes).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from flask import current_app

from ecommerce.categories import repository
from ecommerce.categories.models import CategoryDict
from ecommerce.config import CacheStrategy
from ecommerce.extensions import cache
from ecommerce.metrics import DB_LOADS
from ecommerce.observability import record_cache_error

logger = logging.getLogger(__name__)

#: The whole list lives under one key (the backend adds CACHE_KEY_PREFIX).
CATEGORIES_CACHE_KEY = "categories:all"
#: Each entry lives between 90 % and 100 % of CATEGORIES_CACHE_TTL, so entries
#: written together (every instance after a deploy) do not all expire together
#: and send every instance to the database in the same second.
TTL_JITTER_FRACTION = 0.1


class CacheStatus(StrEnum):
    """Where a GET's answer came from; sent to clients as the X-Cache header."""

    HIT = "HIT"
    MISS = "MISS"


def categories_ttl() -> int:
    """CATEGORIES_CACHE_TTL minus random jitter; the setting stays the maximum staleness."""
    ttl: int = current_app.config["CATEGORIES_CACHE_TTL"]
    return ttl - random.randint(0, int(ttl * TTL_JITTER_FRACTION))


def _call_cache(operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``operation(CATEGORIES_CACHE_KEY, ...)``; an exception becomes None, logged once here.

    Backends are pluggable (SimpleCache, Redis, ours) and each raises its own
    types, so Exception is the narrowest class that covers them all.
    """
    try:
        return operation(CATEGORIES_CACHE_KEY, *args, **kwargs)
    except Exception:
        record_cache_error()
        logger.warning(
            "cache %s(%r) failed on %s; the database answers instead",
            operation.__name__,
            CATEGORIES_CACHE_KEY,
            current_app.config["CACHE_TYPE"],
            exc_info=True,
        )
        return None


def load_categories_from_db() -> list[CategoryDict]:
    DB_LOADS.inc()  # the work the cache exists to avoid: its rate is the cache's failure rate
    return [category.to_dict() for category in repository.list_categories()]


def _store(categories: list[CategoryDict]) -> bool:
    """Put the list under the key; False if the backend refused or failed (it logs why)."""
    return _call_cache(cache.set, categories, timeout=categories_ttl()) is True


def read_categories() -> tuple[list[CategoryDict], CacheStatus]:
    """The category list and whether it came from the cache (cache-aside)."""
    cached = _call_cache(cache.get)
    if cached is not None:  # [] is a valid cached answer: no categories
        return cached, CacheStatus.HIT
    categories = load_categories_from_db()
    _store(categories)
    return categories, CacheStatus.MISS


def after_categories_changed() -> None:
    """Bring the cache in line with a committed write, per CATEGORIES_CACHE_STRATEGY.

    A write-through the backend refuses (DynamoDB's 400 KB item limit, an
    outage) falls back to invalidation: leaving the old entry would serve the
    list without the new category on every instance until the TTL.
    """
    strategy = current_app.config["CATEGORIES_CACHE_STRATEGY"]
    if strategy == CacheStrategy.WRITE_THROUGH:
        if _store(load_categories_from_db()):
            return
        logger.warning("write-through of %r not stored; deleting it instead", CATEGORIES_CACHE_KEY)
    _call_cache(cache.delete)
