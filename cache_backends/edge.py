"""The Flask-Caching edge of a cache whose own layers raise: degrade, never raise.

``@cache.cached``, ``memoize`` and direct ``cache.get`` users expect a backend
that never raises (Flask-Caching re-raises backend errors in debug mode and
swallows them otherwise). :class:`DegradingEdge` gives a backend exactly that,
once: each ``BaseCache`` method calls the same method of ``self.strict`` and
turns :class:`~cache_backends.strict.CacheUnavailable` into the answer
``BaseCache`` gives for "nothing there" (None, False, an empty list). The
failure itself was logged where it happened (the DynamoDB transport), once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_caching.backends.base import BaseCache

from cache_backends.strict import degrade


class DegradingEdge(BaseCache):
    """``BaseCache`` over ``self.strict`` (set by the subclass): unavailable reads as absent."""

    strict: Any

    def get(self, key: str) -> Any:
        return degrade(lambda: self.strict.get(key), None)

    def get_many(self, *keys: str) -> list[Any]:
        return degrade(lambda: self.strict.get_many(*keys), [None] * len(keys))

    def has(self, key: str) -> bool:
        return degrade(lambda: self.strict.has(key), False)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return degrade(lambda: self.strict.set(key, value, timeout), False)

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return degrade(lambda: self.strict.add(key, value, timeout), False)

    def set_many(self, mapping: Mapping[str, Any], timeout: int | None = None) -> list[Any]:
        return degrade(lambda: self.strict.set_many(mapping, timeout), [])

    def delete(self, key: str) -> bool:
        return degrade(lambda: self.strict.delete(key), False)

    def delete_many(self, *keys: str) -> list[Any]:
        return degrade(lambda: self.strict.delete_many(*keys), [])

    def clear(self) -> bool:
        return degrade(self.strict.clear, False)

    def inc(self, key: str, delta: int = 1) -> int | None:
        return degrade(lambda: self.strict.inc(key, delta), None)

    def dec(self, key: str, delta: int = 1) -> int | None:
        return degrade(lambda: self.strict.dec(key, delta), None)
