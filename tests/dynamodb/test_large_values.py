"""parts.py: values larger than one item, as parts named by one manifest written last.

Every failure is forced on the table itself (a part deleted, flipped, a manifest
forged or a PutItem refused on botocore's wire), never left to timing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from cache_backends.dynamodb.backend import DynamoDBCache
from cache_backends.dynamodb.entries import BAD_SIGNATURE
from cache_backends.dynamodb.parts import (
    BAD_DIGEST,
    BAD_MANIFEST,
    BAD_PART,
    MAX_PARTS,
    MISSING,
    PART_BYTES,
    PART_KEY_MARKER,
    Manifest,
    manifest_signing_key,
)
from cache_backends.dynamodb.settings import config_problems
from cache_backends.near import NearCache
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.caches import TEST_SIGNING_KEY, record_dynamodb_calls
from tests.support.dynamodb import MakeCache, flask_cache

#: Random bytes: compression cannot bring them under one item. 2 MB is 6 parts.
LARGE_BYTES = 2 * 1024 * 1024
LARGE_PARTS = -(-(LARGE_BYTES + 64) // PART_BYTES)  # pickle and signature add a few bytes


#: Megabytes per call on DynamoDB Local (a JVM sharing 2 busy cores): a first write
#: of a few MB took it up to 1.8 s, past the production read timeout of 1 s.
RELAXED_READ_TIMEOUT_SECONDS = 5.0


@pytest.fixture
def cache(make_cache: MakeCache) -> DynamoDBCache:
    return make_cache(key_prefix="test:", read_timeout=RELAXED_READ_TIMEOUT_SECONDS)


@pytest.fixture
def large() -> bytes:
    return os.urandom(LARGE_BYTES)


@pytest.fixture
def other_large() -> bytes:
    return os.urandom(LARGE_BYTES)


def stored_keys(raw_table: Any) -> list[str]:
    """Every key in the table (a scan reads 1 MB per page: follow every page)."""
    keys: list[str] = []
    page: dict[str, Any] = {"ProjectionExpression": "cache_key"}
    while True:
        response = raw_table.scan(**page)
        keys += [item["cache_key"] for item in response["Items"]]
        if "LastEvaluatedKey" not in response:
            return sorted(keys)
        page["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def part_keys(raw_table: Any) -> list[str]:
    return [key for key in stored_keys(raw_table) if PART_KEY_MARKER in key]


def manifest_of(cache: DynamoDBCache, raw_table: Any, key: str) -> tuple[dict[str, Any], Manifest]:
    """The raw manifest item of ``key`` and the manifest it carries, verified."""
    item = raw_table.get_item(Key={"cache_key": f"test:{key}"})["Item"]
    entries = cache.strict.entries
    body = entries.codec.unseal(
        manifest_signing_key(item["cache_key"]),
        item["value"].value,
        int(item["expires_ms"]),
    )
    return item, Manifest.decode(body)


@contextmanager
def calls_fail(cache: DynamoDBCache, operation: str) -> Iterator[None]:
    """Every ``operation`` fails on the wire, as a lost connection would; the others work."""

    def fail(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://injected-failure")

    event = f"before-call.dynamodb.{operation}"
    clients = cache.strict.transport.clients()
    for client in clients:
        client.meta.events.register(event, fail)
    try:
        yield
    finally:
        for client in clients:
            client.meta.events.unregister(event, fail)


# -- round trips -------------------------------------------------------------------


def test_a_value_larger_than_an_item_round_trips(
    cache: DynamoDBCache, raw_table: Any, large: bytes
) -> None:
    assert cache.set("big", large) is True
    assert cache.get("big") == large
    assert cache.has("big") is True
    item, manifest = manifest_of(cache, raw_table, "big")
    assert int(item["parts"]) == manifest.count == LARGE_PARTS
    assert len(part_keys(raw_table)) == LARGE_PARTS


def test_a_chunked_read_is_one_get_item_and_one_batch_get_on_the_wire(
    cache: DynamoDBCache, large: bytes
) -> None:
    cache.set("big", large)
    sent = record_dynamodb_calls(cache)
    assert cache.get("big") == large
    assert sent == ["GetItem", "BatchGetItem"]


def test_small_values_still_cost_one_get_item(cache: DynamoDBCache) -> None:
    cache.set("small", "v")
    sent = record_dynamodb_calls(cache)
    assert cache.get("small") == "v"
    assert sent == ["GetItem"]


def test_versioned_writes_of_large_values(
    cache: DynamoDBCache, large: bytes, other_large: bytes
) -> None:
    assert cache.set_versioned("k", large, 4) is True
    assert cache.get("k") == large
    assert cache.set_versioned("k", other_large, 6, expected_rank=4) is True
    assert cache.get("k") == other_large


def test_an_older_rank_does_not_replace_a_newer_chunked_value(
    cache: DynamoDBCache, raw_table: Any, large: bytes, other_large: bytes
) -> None:
    assert cache.set_versioned("k", large, 5) is True
    assert cache.set_versioned("k", other_large, 3) is False
    assert cache.set_versioned("k", other_large, 7, expected_rank=4) is False, "not the rank read"
    assert cache.get("k") == large
    assert len(part_keys(raw_table)) == LARGE_PARTS, "refused writes deleted their parts"


def test_get_many_and_set_many_with_large_values(
    cache: DynamoDBCache, large: bytes, other_large: bytes
) -> None:
    assert sorted(cache.set_many({"big": large, "small": 1, "big2": other_large})) == [
        "big",
        "big2",
        "small",
    ]
    sent = record_dynamodb_calls(cache)
    assert cache.get_many("big", "small", "absent", "big2", "big") == [
        large,
        1,
        None,
        other_large,
        large,
    ]
    assert sent == ["BatchGetItem", "BatchGetItem"], "the keys, then every large value's parts"


def test_add_of_a_large_value(cache: DynamoDBCache, raw_table: Any, large: bytes) -> None:
    assert cache.add("k", large) is True
    assert cache.add("k", b"other") is False
    assert cache.add("k", os.urandom(LARGE_BYTES)) is False
    assert cache.get("k") == large
    assert len(part_keys(raw_table)) == LARGE_PARTS


def test_the_near_cache_serves_large_values(cache: DynamoDBCache, large: bytes) -> None:
    near = NearCache(cache, ttl=5)
    assert near.set("big", large) is True
    assert near.get("big") == large
    assert near.get_many("big", "absent") == [large, None]


def test_parts_share_the_entrys_ttl_and_prefix(
    cache: DynamoDBCache, raw_table: Any, large: bytes
) -> None:
    cache.set("big", large, timeout=60)
    manifest = raw_table.get_item(Key={"cache_key": "test:big"})["Item"]
    for key in part_keys(raw_table):
        part = raw_table.get_item(Key={"cache_key": key})["Item"]
        assert (part["expires_at"], part["expires_ms"]) == (
            manifest["expires_at"],
            manifest["expires_ms"],
        )
        assert part["key_prefix"] == "test:"
    assert cache.clear() is True
    assert stored_keys(raw_table) == []


def test_overwriting_leaves_old_parts_to_their_ttl(
    cache: DynamoDBCache, raw_table: Any, large: bytes, other_large: bytes
) -> None:
    """A reader that has just read the old manifest may still be fetching them."""
    cache.set("big", large)
    cache.set("big", other_large)
    assert cache.get("big") == other_large
    assert len(part_keys(raw_table)) == 2 * LARGE_PARTS
    assert cache.delete("big") is True
    assert cache.get("big") is None


# -- limits ------------------------------------------------------------------------


def test_a_value_above_the_maximum_is_refused(
    make_cache: MakeCache, raw_table: Any, caplog: pytest.LogCaptureFixture, large: bytes
) -> None:
    cache = make_cache(
        key_prefix="test:",
        max_value_bytes=LARGE_BYTES // 2,
        read_timeout=RELAXED_READ_TIMEOUT_SECONDS,
    )
    with caplog.at_level(logging.WARNING):
        assert cache.set("big", large) is False
        assert cache.set_many({"big": large, "small": 1}) == ["small"]
        assert cache.set_versioned("big", large, 1) is False
    assert "CACHE_DYNAMODB_MAX_VALUE_BYTES" in caplog.text
    assert stored_keys(raw_table) == ["test:small"], "nothing of it was written"


# -- failures: a miss, never a wrong or truncated value -----------------------------


def test_a_missing_part_is_a_logged_miss(
    cache: DynamoDBCache, raw_table: Any, caplog: pytest.LogCaptureFixture, large: bytes
) -> None:
    cache.set("big", large)
    cache.set("small", 1)
    raw_table.delete_item(Key={"cache_key": part_keys(raw_table)[1]})
    with caplog.at_level(logging.WARNING):
        assert cache.get("big") is None
        assert cache.has("big") is False
        assert cache.get_many("big", "small") == [None, 1]
    assert MISSING in caplog.text and "test:big" in caplog.text
    assert cache.strict.entries.rejections.counts == {MISSING: 3}


def test_a_tampered_part_is_a_miss(cache: DynamoDBCache, raw_table: Any, large: bytes) -> None:
    cache.set("big", large)
    key = part_keys(raw_table)[0]
    part = raw_table.get_item(Key={"cache_key": key})["Item"]
    blob = part["value"].value
    raw_table.put_item(Item={**part, "value": blob[:-1] + bytes((blob[-1] ^ 1,))})
    assert cache.get("big") is None
    assert cache.strict.entries.rejections.counts == {BAD_PART: 1}


def test_a_manifest_naming_another_writes_parts_is_a_miss(
    cache: DynamoDBCache, raw_table: Any, large: bytes, other_large: bytes
) -> None:
    """Signed with the fleet's key (a bug, or a key holder): the digest still tells."""
    cache.set("k", large)
    _, first = manifest_of(cache, raw_table, "k")
    cache.set("k", other_large)
    second_item, second = manifest_of(cache, raw_table, "k")
    mixed = Manifest(second.count, second.length, first.write_id, second.digest)
    forged = cache.strict.entries.codec.seal(
        manifest_signing_key("test:k"), mixed.encode(), int(second_item["expires_ms"])
    )
    raw_table.put_item(Item={**second_item, "value": forged})

    assert cache.get("k") is None
    assert cache.strict.entries.rejections.counts == {BAD_DIGEST: 1}


def test_a_manifest_is_bound_to_its_key_and_kind(
    cache: DynamoDBCache, raw_table: Any, large: bytes
) -> None:
    cache.set("k", large)
    item = raw_table.get_item(Key={"cache_key": "test:k"})["Item"]
    raw_table.put_item(Item={**item, "cache_key": "test:copy"})
    assert cache.get("copy") is None, "a manifest copied to another key"
    raw_table.put_item(Item={name: value for name, value in item.items() if name != "parts"})
    assert cache.get("k") is None, "a manifest passed off as a small value"
    cache.set("small", "v")
    small = raw_table.get_item(Key={"cache_key": "test:small"})["Item"]
    raw_table.put_item(Item={**small, "parts": 1})
    assert cache.get("small") is None, "a small value passed off as a manifest"
    # A manifest without its parts attribute is a small value whose signature fails.
    assert cache.strict.entries.rejections.counts == {BAD_MANIFEST: 2, BAD_SIGNATURE: 1}


def test_a_partial_write_is_never_served(
    cache: DynamoDBCache, raw_table: Any, large: bytes, other_large: bytes
) -> None:
    """The parts land, the manifest does not: readers keep the previous value."""
    cache.set("big", large)
    with calls_fail(cache, "PutItem"):
        assert cache.set("big", other_large) is False
        assert cache.set_versioned("big", other_large, 9) is False
    assert len(part_keys(raw_table)) == 3 * LARGE_PARTS, "the failed writes' parts are there"
    assert cache.get("big") == large
    assert cache.get_many("big") == [large]


def test_parts_that_fail_to_land_leave_the_key_alone(
    make_cache: MakeCache, large: bytes, other_large: bytes
) -> None:
    # Each part's request fails on its own: without breaker_failures=0 these
    # failures would open the circuit, and the reads below would be skipped.
    cache = make_cache(
        key_prefix="test:", read_timeout=RELAXED_READ_TIMEOUT_SECONDS, breaker_failures=0
    )
    cache.set("big", large)
    sent = record_dynamodb_calls(cache)
    with calls_fail(cache, "BatchWriteItem"):
        assert cache.set("big", other_large) is False
        assert cache.set_many({"big": other_large, "small": 1}) == []
    assert "PutItem" not in sent, "no manifest without its parts"
    assert cache.get_many("big", "small") == [large, None]


def test_the_maximum_is_a_flask_setting(dynamodb_local: DynamoDBLocal, table_name: str) -> None:
    config = {
        "CACHE_DYNAMODB_TABLE": table_name,
        "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
        "CACHE_DYNAMODB_CREATE_TABLE": True,
        "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
        "CACHE_DYNAMODB_MAX_VALUE_BYTES": LARGE_BYTES,
    }
    app, cache = flask_cache(config)
    with app.app_context():
        assert cache.cache.strict.entries.max_value_bytes == LARGE_BYTES
    assert config_problems({"CACHE_DYNAMODB_MAX_VALUE_BYTES": 0}, backend_selected=False) == [
        "CACHE_DYNAMODB_MAX_VALUE_BYTES=0 must be an integer > 0"
    ]
    with pytest.raises(ValueError, match="max_value_bytes"):
        DynamoDBCache(
            endpoint_url=dynamodb_local.endpoint_url,
            signing_key=TEST_SIGNING_KEY,
            max_value_bytes=MAX_PARTS * PART_BYTES + 1,
        )
