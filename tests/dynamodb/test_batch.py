"""batch.py: get_many/set_many/delete_many in DynamoDB's pages, unprocessed items followed."""

from __future__ import annotations

import os

from cache_backends.dynamodb.backend import DynamoDBCache
from cache_backends.dynamodb.batch import MAX_BATCH_GET, MAX_BATCH_WRITE
from tests.support.dynamodb import CallLog, MakeCache

#: A 25-item BatchWriteItem of 380 KB items is ~9.5 MB: DynamoDB Local on a busy
#: 2-core machine took over the production read timeout (1 s) to answer one.
RELAXED_READ_TIMEOUT_SECONDS = 5.0


def test_get_many_batches_keeps_order_and_repeats(cache: DynamoDBCache, calls: CallLog) -> None:
    count = MAX_BATCH_GET * 2 + 50
    cache.set_many({f"k{i}": i for i in range(count)})
    calls.clear()
    keys = ["missing", *(f"k{i}" for i in reversed(range(count))), "k7", "k7"]
    assert cache.get_many(*keys) == [None, *reversed(range(count)), 7, 7]
    assert calls.operations() == ["BatchGetItem"] * 3
    assert cache.get_dict("k1", "k2", "nope") == {"k1": 1, "k2": 2, "nope": None}


def test_set_many_and_delete_many_batch_25_per_request(
    cache: DynamoDBCache, calls: CallLog
) -> None:
    mapping = {f"k{i}": {"n": i} for i in range(100)}
    assert sorted(cache.set_many(mapping, timeout=60)) == sorted(mapping)
    assert calls.operations() == ["BatchWriteItem"] * (100 // MAX_BATCH_WRITE)
    assert cache.get("k99") == {"n": 99}
    calls.clear()
    assert cache.delete_many(*mapping, "k0") == [*mapping, "k0"]
    assert calls.operations() == ["BatchWriteItem"] * (100 // MAX_BATCH_WRITE)
    assert cache.get_many("k0", "k99") == [None, None]


def test_get_many_follows_unprocessed_keys(make_cache: MakeCache, calls: CallLog) -> None:
    """BatchGetItem answers at most 16 MB; the rest comes back as UnprocessedKeys."""
    cache = make_cache(key_prefix="test:", read_timeout=RELAXED_READ_TIMEOUT_SECONDS)
    big_values = {f"big{i}": os.urandom(380 * 1024) for i in range(48)}  # ~18 MB
    assert sorted(cache.set_many(big_values)) == sorted(big_values)
    calls.clear()
    assert cache.get_many(*big_values) == list(big_values.values())
    assert calls.operations().count("BatchGetItem") >= 2
