"""The DynamoDB backend against DynamoDB Local: the BaseCache API and what it does better."""

from __future__ import annotations

import http.client
import http.server
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from cachelib.serializers import JSONSerializer
from flask import Flask
from flask_caching import Cache

from cache_backends.codec import EntryCodec
from cache_backends.dynamodb import MAX_BATCH_GET, MAX_BATCH_WRITE, DynamoDBCache
from cache_backends.keys import MAX_PARTITION_KEY_BYTES
from cache_backends.local import DynamoDBLocal
from tests.conftest import RELAXED_GET_TIMEOUT_SECONDS, TEST_SIGNING_KEY, record_dynamodb_calls

MakeCache = Callable[..., DynamoDBCache]


class CallLog:
    """An observer that records every DynamoDB call the backend makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException | None]] = []
        self._lock = threading.Lock()

    def __call__(self, operation: str, seconds: float, error: BaseException | None) -> None:
        with self._lock:
            self.calls.append((operation, error))

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture
def raw_table(dynamodb_local: DynamoDBLocal, table_name: str) -> Any:
    """The cache table seen through plain boto3, as an attacker or operator would."""
    return boto3.resource("dynamodb", endpoint_url=dynamodb_local.endpoint_url).Table(table_name)


@pytest.fixture
def make_cache(dynamodb_local: DynamoDBLocal, table_name: str, calls: CallLog) -> MakeCache:
    """Build backends on this test's table (created by the first one)."""

    def make(**options: Any) -> DynamoDBCache:
        options.setdefault("table_name", table_name)
        options.setdefault("endpoint_url", dynamodb_local.endpoint_url)
        options.setdefault("region_name", "us-east-1")
        options.setdefault("signing_key", TEST_SIGNING_KEY)
        options.setdefault("create_table", True)
        options.setdefault("observer", calls)
        options.setdefault("get_timeout", RELAXED_GET_TIMEOUT_SECONDS)
        return DynamoDBCache(**options)

    return make


@pytest.fixture
def cache(make_cache: MakeCache, calls: CallLog) -> DynamoDBCache:
    backend = make_cache(key_prefix="test:")
    calls.clear()
    return backend


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


def test_flask_caching_memoize_works_on_batches(
    dynamodb_local: DynamoDBLocal, table_name: str, calls: CallLog
) -> None:
    """memoize keeps version keys and reads them with get_many on every call."""
    app, flask_cache = _flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_CREATE_TABLE": True,
            "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
            "CACHE_DYNAMODB_OBSERVER": calls,
        }
    )
    loads: list[int] = []

    @flask_cache.memoize(timeout=60)
    def square(number: int) -> int:
        loads.append(number)
        return number * number

    with app.app_context():
        assert [square(3), square(3), square(4)] == [9, 9, 16]
        assert loads == [3, 4]
        flask_cache.delete_memoized(square, 3)
        assert square(3) == 9
    assert loads == [3, 4, 3]
    assert "BatchGetItem" in calls.operations()


def test_timeouts_set_the_ttl_attribute(cache: DynamoDBCache, raw_table: Any) -> None:
    before = time.time()
    cache.set("default", 1)
    cache.set("explicit", 1, timeout=4)
    cache.set("forever", 1, timeout=0)
    after = time.time()
    default = raw_table.get_item(Key={"cache_key": "test:default"})["Item"]
    explicit = raw_table.get_item(Key={"cache_key": "test:explicit"})["Item"]
    assert before + 300 <= int(default["expires_at"]) <= after + 300 + 1
    assert before + 4 <= int(explicit["expires_at"]) <= after + 4 + 1, "TTL: seconds, rounded up"
    assert (before + 4) * 1000 - 1 <= int(explicit["expires_ms"]) <= (after + 4) * 1000
    forever = raw_table.get_item(Key={"cache_key": "test:forever"})["Item"]
    assert "expires_at" not in forever and "expires_ms" not in forever


def test_a_huge_timeout_is_capped_not_an_error(cache: DynamoDBCache) -> None:
    assert cache.set("k", "v", timeout=10**12)
    assert cache.get("k") == "v"


def test_the_table_has_ttl_enabled_on_expires_at(cache: DynamoDBCache, dynamodb_local) -> None:
    client = boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url)
    ttl = client.describe_time_to_live(TableName=cache.table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


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


# -- batching ------------------------------------------------------------------


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


def test_get_many_follows_unprocessed_keys(cache: DynamoDBCache, calls: CallLog) -> None:
    """BatchGetItem answers at most 16 MB; the rest comes back as UnprocessedKeys."""
    big_values = {f"big{i}": os.urandom(380 * 1024) for i in range(48)}  # ~18 MB
    assert sorted(cache.set_many(big_values)) == sorted(big_values)
    calls.clear()
    assert cache.get_many(*big_values) == list(big_values.values())
    assert calls.operations().count("BatchGetItem") >= 2


# -- counters ------------------------------------------------------------------


def test_inc_and_dec(cache: DynamoDBCache, calls: CallLog) -> None:
    assert cache.inc("n") == 1
    calls.clear()
    assert cache.inc("n", 5) == 6
    assert calls.operations() == ["UpdateItem"], "a live counter is one atomic UpdateItem"
    assert cache.dec("n", 2) == 4
    assert cache.get("n") == 4
    assert type(cache.get("n")) is int


def test_inc_continues_from_a_set_integer(cache: DynamoDBCache) -> None:
    cache.set("n", 10)
    assert cache.inc("n") == 11
    assert cache.get("n") == 11


def test_inc_refuses_a_non_integer_and_leaves_it(cache: DynamoDBCache, calls: CallLog) -> None:
    cache.set_many({"s": "text", "flag": True})
    calls.clear()
    assert cache.inc("s") is None
    assert len(calls.calls) == 2, "one failed ADD, one read: no retry loop"
    assert cache.inc("flag") is None, "a bool is not a counter"
    assert cache.get_many("s", "flag") == ["text", True]
    assert cache.inc("n", 0.5) is None  # type: ignore[arg-type]
    assert cache.get("n") is None


def test_a_planted_counter_is_rejected(cache: DynamoDBCache, raw_table: Any) -> None:
    """Only items inc() created carry the signed marker that makes a number a counter."""
    raw_table.put_item(Item={"cache_key": "test:planted", "counter": 7})
    assert cache.get("planted") is None
    assert cache.has("planted") is False


def test_inc_is_exact_across_threads(cache: DynamoDBCache) -> None:
    cache.set("n", 100)  # the first increments race to convert the set() value
    threads = [
        threading.Thread(target=lambda: [cache.inc("n") for _ in range(25)]) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("n") == 100 + 8 * 25


def _increment_in_child(cache: DynamoDBCache, times: int) -> None:
    for _ in range(times):
        assert cache.inc("shared") is not None
    # Pages go out on a thread pool the parent already started: a child needs its own.
    keys = [f"page{i}" for i in range(MAX_BATCH_GET * 2)]
    assert cache.get_many(*keys) == list(range(len(keys)))


def test_inc_is_exact_across_forked_processes(cache: DynamoDBCache) -> None:
    """The children inherit a backend that has already connected: fork-safety too."""
    assert cache.inc("shared") == 1
    cache.set_many({f"page{i}": i for i in range(MAX_BATCH_GET * 2)})
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_increment_in_child, args=(cache, 30)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert cache.get("shared") == 1 + 3 * 30


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


# -- keys and values -------------------------------------------------------------


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
    digest_key = owner._storage_key(long_key)
    assert other.get(digest_key[len("a#sha") :]) is None


def test_large_values_are_compressed(cache: DynamoDBCache, raw_table: Any) -> None:
    value = [{"id": i, "name": f"Category {i}"} for i in range(5000)]
    assert cache.set("big", value)
    stored = raw_table.get_item(Key={"cache_key": "test:big"})["Item"]["value"].value
    assert len(stored) < len(pickle.dumps(value)) / 3
    assert cache.get("big") == value


def test_a_value_too_large_for_one_item_is_refused(
    cache: DynamoDBCache, raw_table: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert cache.set("huge", os.urandom(450 * 1024)) is False
    assert "400 KB" in caplog.text
    assert "Item" not in raw_table.get_item(Key={"cache_key": "test:huge"})
    assert cache.set_many({"ok": 1, "huge": os.urandom(450 * 1024)}) == ["ok"]


def test_serializer_is_injectable(make_cache: MakeCache, raw_table: Any) -> None:
    cache = make_cache()
    cache.serializer = JSONSerializer()
    assert cache.set("k", {"a": [1, 2]})
    assert cache.get("k") == {"a": [1, 2]}
    stored = raw_table.get_item(Key={"cache_key": "k"})["Item"]["value"].value
    assert stored.endswith(b'{"a": [1, 2]}'), "signing wraps what the serializer produced"


# -- integrity -----------------------------------------------------------------


class ExplodingPayload:
    """Unpickling this would create a file: proof that a forged entry was loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def test_a_forged_pickle_is_never_loaded(
    cache: DynamoDBCache, raw_table: Any, tmp_path, caplog: pytest.LogCaptureFixture
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


def test_a_signing_key_is_required(dynamodb_local: DynamoDBLocal) -> None:
    with pytest.raises(ValueError, match="signing_key"):
        DynamoDBCache(endpoint_url=dynamodb_local.endpoint_url)


# -- failures --------------------------------------------------------------------


def _down_cache(make_cache: MakeCache, port: int, **options: Any) -> DynamoDBCache:
    return make_cache(
        endpoint_url=f"http://127.0.0.1:{port}",
        create_table=False,
        connect_timeout=0.2,
        read_timeout=0.2,
        max_retries=0,
        **options,
    )


def test_nothing_raises_when_dynamodb_is_unreachable(
    make_cache: MakeCache, unused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _down_cache(make_cache, unused_port, breaker_failures=0)
    with caplog.at_level(logging.WARNING):
        assert cache.get("k") is None
        assert cache.get_many("a", "b") == [None, None]
        assert cache.has("k") is False
        assert cache.set("k", 1) is False
        assert cache.add("k", 1) is False
        assert cache.set_many({"a": 1}) == []
        assert cache.delete("k") is False
        assert cache.delete_many("a") == []
        assert cache.inc("n") is None
        assert cache.clear() is False
        assert cache.health()["ok"] is False
    assert "GetItem" in caplog.text and "failed" in caplog.text


def test_the_circuit_opens_then_probes_again(
    make_cache: MakeCache, unused_port: int, calls: CallLog
) -> None:
    cache = _down_cache(make_cache, unused_port, breaker_failures=3, breaker_cooldown=0.3)
    for _ in range(10):
        assert cache.get("k") is None
    attempted = [error for _, error in calls.calls if "circuit open" not in str(error)]
    assert len(attempted) == 3, "after 3 failures the calls are skipped"
    assert cache.health()["circuit"] == "open"
    time.sleep(0.35)
    calls.clear()
    cache.get("k")
    cache.get("k")
    assert "circuit open" not in str(calls.calls[0][1]), "one probe after the cool-down"
    assert "circuit open" in str(calls.calls[1][1]), "the probe failed: open again"


def test_a_hanging_endpoint_costs_at_most_the_configured_timeouts(
    make_cache: MakeCache, hanging_port: int
) -> None:
    cache = _down_cache(make_cache, hanging_port, breaker_failures=1, breaker_cooldown=60)
    started = time.monotonic()
    assert cache.get("k") is None  # waits for the 0.2 s read timeout once
    assert cache.get("k") is None  # skipped: circuit open
    assert time.monotonic() - started < 2.0, "the 30 s PynamoDB default would block far longer"


def test_the_backend_recovers_when_dynamodb_comes_back(
    make_cache: MakeCache, table_name: str
) -> None:
    with DynamoDBLocal() as ddb:
        make_cache(endpoint_url=ddb.endpoint_url, read_timeout=10)  # a cold JVM answers slowly
        cache = make_cache(
            endpoint_url=ddb.endpoint_url,
            create_table=False,
            breaker_failures=2,
            breaker_cooldown=0.2,
            connect_timeout=0.2,
            read_timeout=0.5,
            max_retries=0,
        )
        assert cache.set("k", "before")
        ddb.stop()
        assert cache.get("k") is None
        assert cache.set("k", "during") is False
        ddb.start()  # same port, empty again: it ran in memory
        make_cache(endpoint_url=ddb.endpoint_url, read_timeout=10)  # an operator recreates it
        deadline = time.monotonic() + 10
        while not cache.set("k", "after") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cache.get("k") == "after"
        assert cache.health()["circuit"] == "closed"


# -- Flask integration -------------------------------------------------------------


def _flask_cache(config: dict[str, Any]) -> tuple[Flask, Cache]:
    app = Flask(__name__)
    app.config.update(config)
    return app, Cache(app, config={"CACHE_TYPE": "cache_backends.dynamodb.DynamoDBCache", **config})


def test_factory_reads_the_flask_config(dynamodb_local: DynamoDBLocal, table_name: str) -> None:
    app, cache = _flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_REGION": "us-east-1",
            "CACHE_DYNAMODB_CREATE_TABLE": True,
            "CACHE_DYNAMODB_CONSISTENT_READ": False,
            "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
            "CACHE_KEY_PREFIX": "flask:",
            "CACHE_DEFAULT_TIMEOUT": 42,
        }
    )
    backend = cache.cache
    assert isinstance(backend, DynamoDBCache)
    assert (backend.table_name, backend.key_prefix, backend.default_timeout) == (
        table_name,
        "flask:",
        42,
    )
    assert backend.consistent_read is False
    with app.app_context():
        assert cache.set("k", [1]) and cache.get("k") == [1]


def test_factory_falls_back_to_secret_key(dynamodb_local: DynamoDBLocal, table_name: str) -> None:
    _, cache = _flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_CREATE_TABLE": True,
            "SECRET_KEY": "app-secret",
        }
    )
    assert cache.cache.set("k", 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CACHE_DYNAMODB_CONSISTENT_READ", "False"),
        ("CACHE_DYNAMODB_READ_TIMEOUT", "1.0"),
        ("CACHE_DYNAMODB_MAX_RETRIES", True),
    ],
)
def test_factory_refuses_a_setting_of_the_wrong_type(
    dynamodb_local: DynamoDBLocal, name: str, value: Any
) -> None:
    """FLASK_X=False is not JSON, so it arrives as the string "False": never truthy here."""
    with pytest.raises(ValueError, match=name):
        _flask_cache(
            {
                "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
                "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
                name: value,
            }
        )


def test_a_single_old_signing_key_is_one_key_not_its_characters(
    dynamodb_local: DynamoDBLocal, table_name: str, make_cache: MakeCache
) -> None:
    forged_with_one_character = make_cache(signing_key="o")
    make_cache(signing_key="old").set("k", "v")
    forged_with_one_character.set("forged", "evil")
    _, cache = _flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_SIGNING_KEY": "new",
            "CACHE_DYNAMODB_OLD_SIGNING_KEYS": "old",
            "CACHE_KEY_PREFIX": "",  # the items above were written without one
        }
    )
    assert cache.cache.get("k") == "v"
    assert cache.cache.get("forged") is None


def test_factory_refuses_to_start_without_a_signing_key(dynamodb_local: DynamoDBLocal) -> None:
    with pytest.raises(ValueError, match="CACHE_DYNAMODB_SIGNING_KEY"):
        _flask_cache({"CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url})


def test_cli_create_table_is_idempotent(dynamodb_local: DynamoDBLocal, table_name: str) -> None:
    from cache_backends.cli import cache_cli

    app, _ = _flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
        }
    )
    app.cli.add_command(cache_cli)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["cache", "create-table"])
    second = runner.invoke(args=["cache", "create-table"])
    assert first.exit_code == second.exit_code == 0
    assert f"created table {table_name}" in first.output
    assert "TTL is enabled on expires_at" in first.output
    assert "already exists" in second.output and "TTL is enabled" in second.output
    status = runner.invoke(args=["cache", "status"])
    assert '"ok": true' in status.output and '"circuit": "closed"' in status.output


class LateAnswerProxy:
    """Forwards to DynamoDB Local, but answers the first call of chosen operations late.

    DynamoDB has applied the write by then; the client has timed out. That is
    the lost response a retry would turn into a second ADD.
    """

    def __init__(self, upstream_port: int, late_operations: set[str], delay: float) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
                upstream.request("POST", self.path, body, dict(self.headers.items()))
                answer = upstream.getresponse()
                data = answer.read()
                operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                if operation in proxy.late_operations:
                    proxy.late_operations.discard(operation)
                    time.sleep(proxy.delay)
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.late_operations = late_operations
        self.delay = delay
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_a_lost_response_never_applies_inc_twice(
    make_cache: MakeCache, dynamodb_local: DynamoDBLocal
) -> None:
    direct = make_cache(key_prefix="r:")
    direct.inc("n")
    proxy = LateAnswerProxy(dynamodb_local.port, {"UpdateItem"}, delay=0.6)
    try:
        late = make_cache(
            key_prefix="r:",
            endpoint_url=proxy.endpoint_url,
            create_table=False,
            read_timeout=0.3,
            max_retries=3,
            breaker_failures=0,
        )
        assert late.inc("n") is None, "the outcome is unknown: not reported as done"
        assert direct.get("n") == 2, "applied once, not once per retry"
    finally:
        proxy.server.shutdown()


@pytest.fixture
def unused_port() -> int:
    from cache_backends.local import free_port

    return free_port()


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


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


# -- creating the table --------------------------------------------------------------


def test_a_table_created_by_another_process_meanwhile_is_success(
    make_cache: MakeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gunicorn's workers start together: each sees no table, one CreateTable wins.

    The race is forced: this cache's existence check answers "absent" although
    another process (the first cache) has just created the table.
    """
    make_cache()  # the other process: creates the table
    late = make_cache(create_table=False)
    monkeypatch.setattr(late._model, "exists", lambda: False)

    done = late.create_table()

    assert any("created by another process" in line for line in done)
    late.set("k", "v")
    assert late.get("k") == "v"


def test_an_unreachable_dynamodb_at_start_up_does_not_stop_the_app_starting(
    make_cache: MakeCache, unused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that raised here would fail to boot, and gunicorn would stop every worker."""
    cache = make_cache(endpoint_url=f"http://127.0.0.1:{unused_port}", breaker_failures=0)

    assert cache.get("k") is None
    assert "not created at start-up" in caplog.text
