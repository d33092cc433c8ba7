"""store.py: the cache's operations against DynamoDB Local, and the strict interface's answers."""

from __future__ import annotations

import random
import zlib
from typing import Any

import pytest

from cache_backends.dynamodb.backend import DynamoDBCache
from cache_backends.keys import MAX_PARTITION_KEY_BYTES, storage_key
from tests.support.caches import record_dynamodb_calls
from tests.support.dynamodb import CallLog, MakeCache

# -- the BaseCache API ---------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        0,
        1.5,
        "",
        "text",
        b"",
        b"\x00bytes",
        None,
        [1, "a"],
        (1, 2),
        {"a": {"b": 1}},
        {1, 2},
        [{"id": 1, "name": "Electronics"}],
    ],
    ids=repr,
)
def test_values_come_back_equal_and_of_the_same_type(cache: DynamoDBCache, value: Any) -> None:
    assert cache.set("k", value)
    got = cache.get("k")
    assert got == value
    assert type(got) is type(value)


def test_a_missing_key_is_none(cache: DynamoDBCache) -> None:
    assert cache.get("absent") is None
    assert cache.has("absent") is False


def test_a_hit_is_exactly_one_get_item_on_the_wire(cache: DynamoDBCache) -> None:
    """Counted by botocore itself, so a hidden DescribeTable would show up too."""
    cache.set("k", "v")
    sent = record_dynamodb_calls(cache)
    assert cache.get("k") == "v"
    assert cache.get_many("k", "k", "other") == ["v", "v", None]
    assert sent == ["GetItem", "BatchGetItem"]


def test_a_key_written_once_is_read_eventually_consistent_and_strongly_only_if_missing(
    cache: DynamoDBCache,
) -> None:
    """Half the read units for a region's bodies; a body the answering replica has not
    seen yet is asked for again, strongly consistent. Counted on botocore's wire."""
    assert cache.strict.set_written_once("body", "v")
    consistency = _get_items(cache, "ConsistentRead")
    assert cache.strict.get_written_once("body") == "v"
    assert consistency == [False]
    assert cache.strict.get_written_once("absent") is None
    assert consistency == [False, False, True]


def test_a_key_written_once_is_stored_in_copies_in_one_batch_and_read_from_one_at_random(
    make_cache: MakeCache,
) -> None:
    """A change makes every instance read the new body at once: its copies spread that
    burst over as many items. Keys read are counted on botocore's wire."""
    cache = make_cache(body_copies=3)
    sent = record_dynamodb_calls(cache)
    assert cache.strict.set_written_once("body", "v")
    assert sent == ["BatchWriteItem"]
    assert [cache.get(key) for key in ("body", "body#1", "body#2", "body#3")] == [
        "v",
        "v",
        "v",
        None,
    ]
    keys_read = _get_items(cache, "Key")
    random.seed(7)
    assert all(cache.strict.get_written_once("body") == "v" for _ in range(30))
    assert {key["cache_key"]["S"] for key in keys_read} == {"body", "body#1", "body#2"}


def test_a_missing_copy_falls_back_to_the_key_itself(make_cache: MakeCache) -> None:
    """Written by a process with fewer copies (a deploy changing the setting): read anyway."""
    make_cache(body_copies=1).strict.set_written_once("body", "v")
    reader = make_cache(body_copies=4)
    random.seed(7)
    assert all(reader.strict.get_written_once("body") == "v" for _ in range(12))


def test_copies_share_one_compression(
    cache: DynamoDBCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compression is the costly step of a write (a 10,000-category body: milliseconds);
    signing, per copy (each signature binds its own key), is cheap."""
    compressions: list[int] = []
    compress = zlib.compress
    monkeypatch.setattr(
        "cache_backends.codec.zlib.compress",
        lambda data, level: compressions.append(len(data)) or compress(data, level),
    )
    big = "category " * 1000
    assert cache.strict.set_written_once("body", big)
    assert len(compressions) == 1
    assert cache.get("body#7") == big


def _get_items(cache: DynamoDBCache, parameter: str) -> list[Any]:
    """Each GetItem's ``parameter`` from now on, as botocore sends it."""
    seen: list[Any] = []
    for client in cache.strict.transport.clients():
        client.meta.events.register(
            "provide-client-params.dynamodb.GetItem",
            lambda params, **_: seen.append(params[parameter]),
        )
    return seen


def test_add_writes_only_when_absent(cache: DynamoDBCache, calls: CallLog) -> None:
    assert cache.add("k", 1) is True
    calls.clear()
    assert cache.add("k", 2) is False
    assert calls.operations() == ["PutItem"], "one conditional write, no read first"
    assert cache.get("k") == 1


def test_delete_reports_whether_the_key_existed(cache: DynamoDBCache) -> None:
    cache.set("k", 1)
    assert cache.delete("k") is True
    assert cache.get("k") is None
    assert cache.delete("k") is False


def test_key_prefix_separates_caches_on_one_table(make_cache: MakeCache) -> None:
    first, second = make_cache(key_prefix="a:"), make_cache(key_prefix="b:")
    first.set("k", "first")
    second.set("k", "second")
    assert (first.get("k"), second.get("k")) == ("first", "second")


# -- the strict interface: answers are answers, failures are exceptions ------------


def test_strict_answers_what_the_table_holds(cache: DynamoDBCache) -> None:
    strict = cache.strict
    assert strict.get("absent") is None, "a miss on a working table is an answer"
    assert strict.set("k", "v") is True
    assert (strict.get("k"), strict.has("k"), strict.get_many("k", "absent")) == (
        "v",
        True,
        ["v", None],
    )
    assert strict.inc("n", 2) == 2
    assert strict.dec("n") == 1
    assert sorted(strict.set_many({"a": 1, "b": 2})) == ["a", "b"]
    assert strict.delete_many("a", "b") == ["a", "b"]
    assert strict.clear() is True
    assert cache.get_many("k", "n") == [None, None]


def test_a_failed_condition_is_an_answer_not_a_failure(
    make_cache: MakeCache, calls: CallLog
) -> None:
    """Refused conditional writes report False, never CacheUnavailable, and never trip
    the breaker (here one real failure would open it)."""
    strict = make_cache(key_prefix="test:", breaker_failures=1).strict
    calls.clear()

    assert strict.add("k", 1) is True
    assert strict.add("k", 2) is False, "a live entry is there"
    assert strict.delete("absent") is False, "nothing to delete"
    assert strict.set_versioned("v", "rank 4", 4) is True
    assert strict.set_versioned("v", "rank 2", 2) is False, "a higher rank is there"
    assert strict.set_versioned("v", "cas", 6, expected_rank=3) is False, "not the rank read"

    assert [error for _, error in calls.calls] == [None] * len(calls.calls)
    assert strict.get("v") == "rank 4", "the circuit is still closed"


def test_set_versioned_never_replaces_a_higher_rank(cache: DynamoDBCache) -> None:
    assert cache.set_versioned("k", "rank 3", 3)
    assert cache.set_versioned("k", "rank 3 again", 3), "equal ranks replace each other"
    assert not cache.set_versioned("k", "rank 1", 1)
    assert cache.set_versioned("k", "rank 5", 5, expected_rank=3), "compare-and-set"
    assert cache.get("k") == "rank 5"
    cache.set("k", "plain")
    assert cache.set_versioned("k", "rank 0", 0), "an item without a rank is replaced"


def test_the_rank_is_stored_under_the_attribute_name_older_releases_compare(
    cache: DynamoDBCache, raw_table: Any
) -> None:
    """Renamed in Python only: a rolling deploy mixes releases on one table."""
    cache.set_versioned("k", "v", 7)
    item = raw_table.get_item(Key={"cache_key": "test:k"})["Item"]
    assert item["version"] == 7 and "rank" not in item
    raw_table.put_item(Item={**item, "version": 9})  # as the previous release writes it
    assert not cache.set_versioned("k", "older", 8)


# -- clear ---------------------------------------------------------------------


@pytest.mark.parametrize("other_prefix", ["theirs:", "mine:v2:", "mine"])
def test_clear_removes_only_its_own_prefix(make_cache: MakeCache, other_prefix: str) -> None:
    """Not even a prefix that starts with ours (or that ours starts with)."""
    mine, theirs = make_cache(key_prefix="mine:"), make_cache(key_prefix=other_prefix)
    long_key = "x" * (MAX_PARTITION_KEY_BYTES + 10)
    mine.set_many({"a": 1, "b": 2, long_key: 3})
    mine.inc("counter")
    mine.add("added", 4)
    theirs.set_many({"a": "kept", "c": "kept too"})
    assert mine.clear() is True
    assert mine.get_many("a", "b", long_key, "counter", "added") == [None] * 5
    assert theirs.get_many("a", "c") == ["kept", "kept too"]


def test_clear_without_prefix_empties_the_table(make_cache: MakeCache, raw_table: Any) -> None:
    prefixed, unprefixed = make_cache(key_prefix="p:"), make_cache()
    prefixed.set("a", 1)
    unprefixed.set("b", 2)
    assert unprefixed.clear() is True
    assert raw_table.scan()["Count"] == 0


# -- keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "ünïcødé ✓",
        "a" * (MAX_PARTITION_KEY_BYTES + 1),
        "é" * 2000,
        "p:#sha256:" + "0" * 64,
        "lone \ud800 surrogate",
    ],
    ids=["empty", "unicode", "too-long", "too-long-utf8", "digest-lookalike", "surrogate"],
)
def test_any_str_key_works(cache: DynamoDBCache, key: str) -> None:
    assert cache.set(key, "v")
    assert cache.get(key) == "v"
    assert cache.get_many(key) == ["v"]
    assert cache.inc(key + "#n") == 1
    assert cache.delete(key)


def test_long_keys_do_not_collide_across_prefixes(make_cache: MakeCache) -> None:
    long_key = "k" * 3000
    first, second = make_cache(key_prefix="one:"), make_cache(key_prefix="two:")
    first.set(long_key, 1)
    second.set(long_key, 2)
    assert (first.get(long_key), second.get(long_key)) == (1, 2)


def test_a_digest_key_cannot_be_reached_from_another_prefix(make_cache: MakeCache) -> None:
    """Prefix "a" stores a long key as "a#sha256:<hex>"; prefix "a#sha" must not read it."""
    owner, other = make_cache(key_prefix="a"), make_cache(key_prefix="a#sha")
    long_key = "k" * 3000
    owner.set(long_key, "owner's")
    digest_key = storage_key("a", long_key)
    assert other.get(digest_key[len("a#sha") :]) is None
