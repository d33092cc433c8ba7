"""The shipped backend contract (``cache_backends/testing.py``) run on every backend of the app.

:class:`~cache_backends.testing.CacheContract` is what a Flask-Caching backend must do,
stated once in the library, where a backend of anyone's inherits it (as cachelib's
tests/common.py); here one class per backend of this app provides ``make_cache``:

- ``TestSimpleCache``: Flask-Caching's SimpleCache (cachelib's), the local default;
- ``TestDynamoDBCache``: our backend on DynamoDB Local, a fresh table per test;
- ``TestNearCache``: ``NearCache`` in front of a ``DynamoDBCache``.

Where a backend deliberately differs, its class sets a flag that the contract reads,
beside the line of its docstring that documents the difference: nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask_caching.backends import SimpleCache
from flask_caching.backends.base import BaseCache

from cache_backends.dynamodb import DynamoDBCache
from cache_backends.near import NearCache
from cache_backends.testing import CacheContract, MakeCache
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.caches import local_dynamodb_cache

#: The near-cache keeps copies longer than the contract's short timeout, so the expiry
#: test shows that a copy never outlives its entry.
NEAR_TTL_SECONDS = 5.0


class TestSimpleCache(CacheContract):
    """Flask-Caching's SimpleCache: a dict in this process, the app's local default."""

    #: Flask-Caching's SimpleCache takes no key_prefix: each instance is its own dict.
    TAKES_KEY_PREFIX = False

    @pytest.fixture
    def make_cache(self) -> MakeCache:
        def make(default_timeout: int = 300) -> BaseCache:
            return SimpleCache(default_timeout=default_timeout)

        return make


def dynamodb_cache_factory(
    dynamodb_local: DynamoDBLocal, table_name: str
) -> Callable[..., DynamoDBCache]:
    """DynamoDBCaches on one fresh table, built as the backend's own tests build them."""

    def make(default_timeout: int = 300, key_prefix: str | None = None) -> DynamoDBCache:
        return local_dynamodb_cache(
            dynamodb_local.endpoint_url,
            table_name,
            default_timeout=default_timeout,
            key_prefix=key_prefix,
        )

    return make


class TestDynamoDBCache(CacheContract):
    """Our backend, on the session's DynamoDB Local."""

    #: "a value still larger after compression is stored in parts, up to max_value_bytes"
    #: (8 MiB): the contract's large value, 500 KB, is one of those.
    MAX_VALUE_BYTES = None

    @pytest.fixture
    def make_cache(self, dynamodb_local: DynamoDBLocal, table_name: str) -> MakeCache:
        return dynamodb_cache_factory(dynamodb_local, table_name)


class TestNearCache(CacheContract):
    """NearCache in front of a DynamoDBCache: what one process sees through both layers."""

    #: Writes go to the remote first: what it refuses, the near layer does not keep;
    #: it stores values over one item in parts (8 MiB at most), as TestDynamoDBCache.
    MAX_VALUE_BYTES = None
    #: "Values are held frozen (frozen.py): a hit hands out the held object itself,
    #: no unpickling and no copy, and a caller that tries to mutate it gets a TypeError".
    READ_ONLY_VALUES = True

    @pytest.fixture
    def make_cache(self, dynamodb_local: DynamoDBLocal, table_name: str) -> MakeCache:
        make_remote = dynamodb_cache_factory(dynamodb_local, table_name)

        def make(**options: Any) -> BaseCache:
            return NearCache(make_remote(**options), ttl=NEAR_TTL_SECONDS)

        return make
