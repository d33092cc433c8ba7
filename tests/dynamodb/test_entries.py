"""entries.py: expiry, size, compression, signatures and malformed items, as stored in DynamoDB."""

from __future__ import annotations

import logging
import os
import pickle
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cache_backends.codec import EntryCodec
from cache_backends.dynamodb.backend import DynamoDBCache
from tests.support.caches import TEST_SIGNING_KEY
from tests.support.dynamodb import MakeCache


def put_signed(raw_table: Any, storage_key: str, value: Any, expires_ms: int | None) -> None:
    """Write a correctly signed entry directly, e.g. one already past its expiry."""
    codec = EntryCodec(TEST_SIGNING_KEY)
    item: dict[str, Any] = {
        "cache_key": storage_key,
        "value": codec.seal(storage_key, pickle.dumps(value), expires_ms),
    }
    if expires_ms is not None:
        item.update(expires_ms=expires_ms, expires_at=expires_ms // 1000 + 1)
    raw_table.put_item(Item=item)


# -- expiry --------------------------------------------------------------------


def test_timeouts_set_the_ttl_attribute(cache: DynamoDBCache, raw_table: Any) -> None:
    before = time.time()
    cache.set("default", 1)
    cache.set("explicit", 1, timeout=4)
    cache.set("forever", 1, timeout=0)
    after = time.time()
    default = raw_table.get_item(Key={"cache_key": "test:default"})["Item"]
    explicit = raw_table.get_item(Key={"cache_key": "test:explicit"})["Item"]
    # Expiry is counted from now in whole milliseconds (truncated), then rounded up to the
    # second for the TTL: a set in the first millisecond of a second may expire up to
    # 1 ms before ``before`` + timeout (one run in a thousand), never a second early.
    earliest = int(before * 1000) / 1000
    assert earliest + 300 <= int(default["expires_at"]) <= after + 300 + 1
    assert earliest + 4 <= int(explicit["expires_at"]) <= after + 4 + 1, "TTL: seconds, rounded up"
    assert (before + 4) * 1000 - 1 <= int(explicit["expires_ms"]) <= (after + 4) * 1000
    forever = raw_table.get_item(Key={"cache_key": "test:forever"})["Item"]
    assert "expires_at" not in forever and "expires_ms" not in forever


def test_a_huge_timeout_is_capped_not_an_error(cache: DynamoDBCache) -> None:
    assert cache.set("k", "v", timeout=10**12)
    assert cache.get("k") == "v"


def test_an_expired_item_not_yet_deleted_is_a_miss_everywhere(
    cache: DynamoDBCache, raw_table: Any
) -> None:
    now_ms = int(time.time() * 1000)
    for key in ("gone", "counter-gone"):
        put_signed(raw_table, f"test:{key}", 41, expires_ms=now_ms - 60_000)
    put_signed(raw_table, "test:alive", "yes", expires_ms=now_ms + 60_000)

    assert raw_table.get_item(Key={"cache_key": "test:gone"}).get("Item"), "still stored"
    assert cache.get("gone") is None
    assert cache.has("gone") is False
    assert cache.get_many("gone", "alive") == [None, "yes"]
    assert cache.inc("counter-gone") == 1  # starts from 0, not from the expired 41
    assert cache.add("gone", "new") is True
    assert cache.get("gone") == "new"


def test_a_one_second_timeout_means_one_second(cache: DynamoDBCache) -> None:
    """Whatever the time within the second: DynamoDB's TTL only knows whole seconds."""
    for _ in range(3):
        cache.set("short", "v", timeout=1)
        assert cache.get("short") == "v"
        time.sleep(0.3)
    time.sleep(0.75)
    assert cache.get("short") is None


# -- size ------------------------------------------------------------------------


def test_large_values_are_compressed(cache: DynamoDBCache, raw_table: Any) -> None:
    value = [{"id": i, "name": f"Category {i}"} for i in range(5000)]
    assert cache.set("big", value)
    stored = raw_table.get_item(Key={"cache_key": "test:big"})["Item"]["value"].value
    assert len(stored) < len(pickle.dumps(value)) / 3
    assert cache.get("big") == value


def test_a_value_too_large_for_one_item_is_stored_in_parts(
    cache: DynamoDBCache, raw_table: Any
) -> None:
    """test_large_values.py has the rest; here, the item that names them."""
    value = os.urandom(450 * 1024)
    assert cache.set("huge", value) is True
    assert raw_table.get_item(Key={"cache_key": "test:huge"})["Item"]["parts"] == 2
    assert cache.get("huge") == value


def test_a_value_over_max_value_bytes_is_refused(
    make_cache: MakeCache, raw_table: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(key_prefix="test:", max_value_bytes=400 * 1024)
    with caplog.at_level(logging.WARNING):
        assert cache.set("huge", os.urandom(450 * 1024)) is False
    assert "CACHE_DYNAMODB_MAX_VALUE_BYTES" in caplog.text
    assert "Item" not in raw_table.get_item(Key={"cache_key": "test:huge"})
    assert cache.set_many({"ok": 1, "huge": os.urandom(450 * 1024)}) == ["ok"]


# -- integrity -----------------------------------------------------------------


class ExplodingPayload:
    """Unpickling this would create a file: proof that a forged entry was loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def test_a_forged_pickle_is_never_loaded(
    cache: DynamoDBCache, raw_table: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(ExplodingPayload(str(marker)))
    unsigned = bytes((1, 0)) + b"\x00" * 32 + payload
    raw_table.put_item(Item={"cache_key": "test:forged", "value": unsigned})
    raw_table.put_item(Item={"cache_key": "test:raw", "value": payload})
    with caplog.at_level(logging.WARNING):
        assert cache.get("forged") is None
        assert cache.get_many("forged", "raw") == [None, None]
    assert not marker.exists()
    assert "test:forged" in caplog.text and "rejected" in caplog.text


def test_tampered_entries_are_misses(cache: DynamoDBCache, raw_table: Any) -> None:
    cache.set("a", "original", timeout=60)
    item = raw_table.get_item(Key={"cache_key": "test:a"})["Item"]
    blob = bytearray(item["value"].value)

    flipped = bytes(blob[:-1]) + bytes((blob[-1] ^ 1,))
    raw_table.put_item(Item={**item, "value": flipped})
    assert cache.get("a") is None, "a changed body"

    raw_table.put_item(Item={**item, "expires_ms": int(item["expires_ms"]) + 3_600_000})
    assert cache.get("a") is None, "a longer life than was signed"
    unsigned_life = {k: v for k, v in item.items() if k not in ("expires_ms", "expires_at")}
    raw_table.put_item(Item=unsigned_life)
    assert cache.get("a") is None, "an expiry removed"

    raw_table.put_item(Item={**item, "cache_key": "test:b"})
    assert cache.get("b") is None, "an entry copied to another key"

    raw_table.put_item(Item=item)
    assert cache.get("a") == "original"


def test_an_entry_signed_with_another_key_is_a_miss(make_cache: MakeCache) -> None:
    make_cache(signing_key="someone-else").set("k", "v")
    assert make_cache().get("k") is None
    assert make_cache().has("k") is False


def test_old_signing_keys_still_verify_during_rotation(make_cache: MakeCache) -> None:
    make_cache(signing_key="old-key").set("k", "v")
    rotated = make_cache(signing_key="new-key", old_signing_keys=["old-key"])
    assert rotated.get("k") == "v"
    rotated.set("k2", "v2")
    assert make_cache(signing_key="new-key").get("k2") == "v2"


@pytest.mark.parametrize(
    "item",
    [
        {"value": "a string, not bytes"},
        {"value": b"x", "expires_at": "not a number"},
        {"value": b"x", "expires_ms": "not a number"},
        {"value": b"x", "expires_at": int(time.time() * 1000)},  # milliseconds by mistake
        {"value": b"x", "expires_at": -(10**12)},
        {"counter": "12"},
        {"counter": Decimal("1.5")},
    ],
    ids=[
        "value-type",
        "ttl-type",
        "expiry-type",
        "ttl-in-ms",
        "ttl-negative",
        "counter-type",
        "counter-float",
    ],
)
def test_malformed_items_are_misses_not_exceptions(
    cache: DynamoDBCache, raw_table: Any, item: dict[str, Any]
) -> None:
    raw_table.put_item(Item={"cache_key": "test:odd", **item})
    cache.set("fine", 3)
    assert cache.get("odd") is None
    assert cache.has("odd") is False
    assert cache.inc("odd") is None, "not a counter inc() can trust"
    assert cache.get_many("odd", "fine") == [None, 3]
