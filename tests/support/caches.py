"""Cache backends as tests configure them: the test key and budget, a raising backend,
a backend that fails on demand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_caching.backends.base import BaseCache
from flask_caching.backends.simplecache import SimpleCache

from cache_backends.dynamodb import DynamoDBCache
from cache_backends.strict import CacheUnavailable

#: Tests sign entries with this; the app refuses to start with DynamoDB and no key.
TEST_SIGNING_KEY = "test-signing-key"
#: Not the production 0.1 s: on a busy 2-core test machine a GetItem can take longer,
#: and a read answered by the database would break a story's HIT/STALE.
RELAXED_GET_TIMEOUT_SECONDS = 1.0
#: Likewise for the request path's writes (0.3 s in production): a read's lease and
#: store, a write's cache update.
RELAXED_WRITE_TIMEOUT_SECONDS = 1.0


def local_dynamodb_cache(endpoint_url: str, table_name: str, **options: Any) -> DynamoDBCache:
    """A DynamoDBCache on DynamoDB Local as the tests build one: the test signing key, the
    relaxed get and write budgets, the table created if absent; ``options`` add to or
    replace those."""
    settings: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region_name": "us-east-1",
        "create_table": True,
        "signing_key": TEST_SIGNING_KEY,
        "get_timeout": RELAXED_GET_TIMEOUT_SECONDS,
        "write_timeout": RELAXED_WRITE_TIMEOUT_SECONDS,
    }
    return DynamoDBCache(table_name, **{**settings, **options})


class RaisingCache(BaseCache):
    """A cache backend whose every call raises, as a misbehaving future backend might.

    Selected with CACHE_TYPE="tests.support.caches.RaisingCache"; proves the app treats
    any backend exception as a miss rather than a 500.
    """

    def _unreachable(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache backend unreachable")

    get = set = add = delete = has = clear = _unreachable
    get_many = set_many = delete_many = inc = dec = _unreachable


def record_dynamodb_calls(backend: Any) -> list[str]:
    """Every DynamoDB operation ``backend`` sends from now on, as botocore names it.

    Counted on botocore's own event hooks, below the backend: a hidden call (a
    DescribeTable, a retry's second GetItem) shows up too. ``backend`` is a
    DynamoDBCache, or anything layered over one (``.remote``).
    """
    backend = getattr(backend, "remote", backend)
    sent: list[str] = []
    for client in backend.strict.transport.clients():
        client.meta.events.register(
            "before-call.dynamodb", lambda model, **_: sent.append(model.name)
        )
    return sent


class FlakyCache(SimpleCache):
    """A SimpleCache that raises CacheUnavailable, as a partitioned strict interface does."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self._recoveries: list[Callable[[], None]] = []

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """As a circuit breaker's first good probe does: called by :meth:`heal`."""
        self._recoveries.append(callback)

    def heal(self) -> None:
        """Answer again, and tell whoever registered for recoveries."""
        self.failing = False
        for callback in self._recoveries:
            callback()

    def _check(self) -> None:
        if self.failing:
            raise CacheUnavailable("partitioned (test)")

    def get(self, key: str) -> Any:
        self._check()
        return super().get(key)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        self._check()
        return super().set(key, value, timeout)

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        self._check()
        return super().add(key, value, timeout)

    def delete(self, key: str) -> bool:
        self._check()
        return super().delete(key)
