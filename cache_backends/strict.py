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

Two optional seams, generic so that the layers above never name a backend:

- :func:`request_path` marks the calls a block makes as made on a request's
  path (a write's cache update after its commit; a read's lease, store and
  release): a backend with a short
  budget for such calls uses it (DynamoDBCache: ``CACHE_DYNAMODB_WRITE_TIMEOUT``,
  no retry), any other ignores it. A context rather than a second object, so
  that it passes through every layer (the near-cache, the loader) unchanged;
  it follows the thread or greenlet, so background retries keep the patient
  settings.
- :func:`on_recovery` registers a callback for the moment a failing cache
  answers again (DynamoDBCache: its circuit breaker's first successful
  probe), so that what was owed meanwhile is retried at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar, runtime_checkable

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CacheUnavailable(Exception):
    """The cache could not be asked: a call failed, or was skipped (circuit open)."""


class CacheThrottled(CacheUnavailable):
    """The cache answered, but refused the call for capacity (a hot key, a table at its
    limit): unavailable for this call, yet not down, so no reason to stop asking it."""


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


class _RequestBudget:
    """One request's calls to the cache: after one timed out or failed, the rest are skipped."""

    __slots__ = ("spent_on",)

    def __init__(self) -> None:
        self.spent_on: str | None = None


#: Set inside :func:`request_path`: the calls are made while a client waits.
_REQUEST_BUDGET: ContextVar[_RequestBudget | None] = ContextVar(
    "cache_request_budget", default=None
)


@contextmanager
def request_path() -> Iterator[None]:
    """Cache calls made inside run on a request's path: a backend gives them a short budget,
    and after one of them failed (a timeout: the cache hangs), skips the others.

    A write's cache update is tried at once, while its client waits; one that does
    not land within the budget is owed and retried in the background
    (``cache_backends.owed``), so the budget only bounds the answer's latency. A
    read's lease, store and release run inside too (``VersionedLoader.get``) and share
    one budget, so a cache that hangs mid-way costs the read one short timeout, not one
    per call, and the database answers. Nested uses share the outermost budget. Threads
    started inside do not inherit it (a background refresh keeps the patient budget).
    """
    if _REQUEST_BUDGET.get() is not None:
        yield
        return
    token = _REQUEST_BUDGET.set(_RequestBudget())
    try:
        yield
    finally:
        _REQUEST_BUDGET.reset(token)


def on_request_path() -> bool:
    """Whether the running code is inside :func:`request_path` (backends ask this)."""
    return _REQUEST_BUDGET.get() is not None


def request_budget_spent() -> str | None:
    """The call that failed earlier on this request path (the rest are skipped); None if none."""
    budget = _REQUEST_BUDGET.get()
    return None if budget is None else budget.spent_on


def spend_request_budget(call: str) -> None:
    """``call`` failed on this request path: the request's other calls are skipped."""
    budget = _REQUEST_BUDGET.get()
    if budget is not None and budget.spent_on is None:
        budget.spent_on = call


@runtime_checkable
class Recovering(Protocol):
    """A strict interface that can say when it answers again after failing."""

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no lock held, on the caller's thread) each time it recovers."""


def on_recovery(cache: Any, callback: Callable[[], None]) -> bool:
    """Register ``callback`` for ``cache``'s recoveries; False if it cannot tell.

    A cache that cannot tell (SimpleCache) needs nothing: the retries' backoff
    covers it.
    """
    strict = strict_interface(cache)
    if not isinstance(strict, Recovering):
        return False
    strict.on_recovery(callback)
    return True
