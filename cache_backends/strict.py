"""Failures as exceptions inside the cache layers; degradation only at the Flask-Caching edge.

A Flask-Caching backend must never raise (``@cache.cached`` would turn an outage
into 500s), so ``DynamoDBCache.get`` answers ``None`` for a miss and for an
outage alike. Callers that must tell the two apart (the loader takes a lease and
stores only through a working cache; the near-cache keeps only what the remote
really answered; a write's cache update that did not land is owed) use the
backend's *strict interface* instead: the same methods (``get``, ``set``, ``add``,
``delete``, ``set_versioned``...), which answer what the cache holds and raise
:class:`CacheUnavailable` when it could not be asked.

A backend whose ``BaseCache`` methods degrade offers its strict interface as
``.strict``; any other backend (SimpleCache, Redis) already lets its errors
propagate and is its own strict interface. No imports beyond the standard
library: the app's metrics and the near-cache use this without loading botocore.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CacheUnavailable(Exception):
    """The cache could not be asked: a call failed, or was skipped (circuit open)."""


@runtime_checkable
class DegradingCache(Protocol):
    """A backend whose BaseCache methods never raise, with a strict interface beside them."""

    @property
    def strict(self) -> Any:
        """The same operations, raising :class:`CacheUnavailable` instead of degrading."""


def strict_interface(cache: Any) -> Any:
    """``cache``'s raising interface: its ``.strict`` if it degrades, else ``cache`` itself."""
    return cache.strict if isinstance(cache, DegradingCache) else cache


def degrade(operation: Callable[[], T], fallback: T) -> T:
    """``operation()``, or ``fallback`` if the cache is unavailable (already logged below)."""
    try:
        return operation()
    except CacheUnavailable:
        return fallback
