"""What a Flask-Caching backend must do, stated once and run on every backend of the app.

In the spirit of cachelib's tests/common.py: :class:`CacheContract` is the behaviour
of ``BaseCache`` that the app, Flask-Caching's decorators and the loader rely on
(get/set/add/delete/has, the ``*_many`` calls, ``get_dict``, ``inc``/``dec``, ``clear``,
timeouts with 0 meaning forever, expiry, values of any picklable type, key-prefix
isolation), and one class per backend inherits it:

- ``TestSimpleCache``: Flask-Caching's SimpleCache (cachelib's), the local default;
- ``TestDynamoDBCache``: our backend on DynamoDB Local, a fresh table per test;
- ``TestNearCache``: ``NearCache`` in front of a ``DynamoDBCache``.

Where a backend deliberately differs, its class sets a flag that the contract reads,
beside the line of its docstring that documents the difference: nothing is skipped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask_caching.backends import SimpleCache
from flask_caching.backends.base import BaseCache

from cache_backends.dynamodb import DynamoDBCache
from cache_backends.near import NearCache
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.caches import (
    RELAXED_GET_TIMEOUT_SECONDS,
    TEST_SIGNING_KEY,
    start_early_in_a_second,
)

#: ``make_cache(default_timeout=..., key_prefix=...)``: a cache on the test's store.
MakeCache = Callable[..., BaseCache]

#: One value of each kind the app or a Flask-Caching user may store (cachelib's idea).
SAMPLE_VALUES: dict[str, Any] = {
    "false": False,
    "true": True,
    "zero": 0,
    "negative": -7,
    "beyond-64-bits": 2**70,
    "float": 3.25,
    "empty-string": "",
    "string": "spam",
    "unicode": "Straße ☃",
    "bytes": b"\x00\xff binary",
    "empty-list": [],
    "empty-dict": {},
    "nested": [{"id": 1, "name": "Books"}, ["baked beans", [512]]],
    "int-keyed-dict": {256: "truffle", "sauce": []},
    "tuple": (1, "two"),
    "set": {1, 2, 3},
}
#: A key of each shape callers send: DynamoDB's key limit is 2048 bytes, so a long one
#: is stored under its digest (keys.py); the others are ordinary strings.
SAMPLE_KEYS = ("x" * 3000, "catégorie/ü ☃", "with spaces and: colons", "view//categories")
#: The shortest timeout a caller can ask for; the expiry test waits just past it.
SHORT_TIMEOUT_SECONDS = 1
#: Past the expiry by this much before reading: clocks step in milliseconds.
EXPIRY_MARGIN_SECONDS = 0.05
#: The near-cache keeps copies longer than the short timeout, so the expiry test
#: shows that a copy never outlives its entry.
NEAR_TTL_SECONDS = 5.0
#: Enough concurrent callers to interleave on a 2-core machine, few enough to be quick.
RACERS = 4
INCREMENTS_PER_RACER = 10
#: DynamoDB's item limit, documented in DynamoDBCache's docstring ("Cost and limits").
DYNAMODB_ITEM_LIMIT_BYTES = 400 * 1024


def run_together(call: Callable[[], Any], count: int) -> list[Any]:
    """``count`` threads released by one barrier, each calling ``call``; their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def one(index: int) -> None:
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=one, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class CacheContract:
    """The behaviour every backend shares; subclasses provide ``make_cache`` and the flags."""

    #: Two caches with different ``key_prefix`` share one store (a table) and stay apart.
    #: False: the backend takes no ``key_prefix``, and each instance is a store of its own.
    TAKES_KEY_PREFIX: bool = True
    #: None: any picklable value is stored; else ``set`` refuses (False) a larger value.
    MAX_VALUE_BYTES: int | None = None
    #: True: ``get`` hands out the stored object itself, frozen (mutating it raises
    #: TypeError); False: each ``get`` returns a fresh copy the caller may change.
    READ_ONLY_VALUES: bool = False

    @pytest.fixture
    def make_cache(self) -> MakeCache:
        raise NotImplementedError("each backend's class provides its own make_cache")

    @pytest.fixture
    def cache(self, make_cache: MakeCache) -> BaseCache:
        return make_cache()

    # --- get, set, add, delete, has ---------------------------------------------------

    def test_an_absent_key_reads_as_none_and_has_says_false(self, cache: BaseCache) -> None:
        assert cache.get("absent") is None
        assert cache.has("absent") is False

    @pytest.mark.parametrize("name", SAMPLE_VALUES)
    def test_set_then_get_returns_an_equal_value(self, cache: BaseCache, name: str) -> None:
        assert cache.set(name, SAMPLE_VALUES[name]) is True

        assert cache.get(name) == SAMPLE_VALUES[name]
        assert cache.has(name) is True

    @pytest.mark.parametrize("key", SAMPLE_KEYS)
    def test_keys_of_any_length_and_alphabet_work(self, cache: BaseCache, key: str) -> None:
        assert cache.set(key, "value") is True
        assert cache.get(key) == "value"
        assert cache.delete(key) is True
        assert cache.get(key) is None

    def test_a_stored_none_is_told_from_an_absent_key_by_has(self, cache: BaseCache) -> None:
        """``get`` cannot tell them apart; ``has`` can, as memoize relies on."""
        assert cache.set("none", None) is True

        assert cache.get("none") is None
        assert cache.has("none") is True

    def test_set_replaces_the_value(self, cache: BaseCache) -> None:
        cache.set("key", "old")

        assert cache.set("key", "new") is True
        assert cache.get("key") == "new"

    def test_add_stores_only_when_the_key_is_absent(self, cache: BaseCache) -> None:
        assert cache.add("key", "first") is True
        assert cache.add("key", "second") is False
        assert cache.get("key") == "first"

    def test_delete_removes_and_says_whether_there_was_something(self, cache: BaseCache) -> None:
        cache.set("key", "value")

        assert cache.delete("key") is True
        assert cache.get("key") is None
        assert cache.has("key") is False
        assert cache.delete("key") is False

    def test_a_stored_value_is_a_snapshot_that_no_caller_can_change(self, cache: BaseCache) -> None:
        """Neither the writer (after ``set``) nor a reader changes what the next ``get`` sees."""
        categories = [{"id": 1, "name": "Books"}]
        cache.set("list", categories)
        categories.append({"id": 2, "name": "Toys"})

        got = cache.get("list")
        assert got == [{"id": 1, "name": "Books"}]
        if self.READ_ONLY_VALUES:
            with pytest.raises(TypeError):
                got.append({"id": 3, "name": "Games"})
            with pytest.raises(TypeError):
                got[0]["name"] = "Comics"
        else:
            got.append({"id": 3, "name": "Games"})
            got[0]["name"] = "Comics"
        assert cache.get("list") == [{"id": 1, "name": "Books"}]

    def test_values_up_to_the_backends_limit_are_stored_and_larger_ones_refused(
        self, cache: BaseCache
    ) -> None:
        """Random bytes: compression cannot bring them under a limit."""
        small = os.urandom(300 * 1024)
        large = os.urandom(DYNAMODB_ITEM_LIMIT_BYTES + 100 * 1024)

        assert cache.set("small", small) is True
        assert cache.get("small") == small
        if self.MAX_VALUE_BYTES is None:
            assert cache.set("large", large) is True
            assert cache.get("large") == large
        else:
            assert len(large) > self.MAX_VALUE_BYTES
            assert cache.set("large", large) is False
            assert cache.get("large") is None

    # --- the *_many calls -----------------------------------------------------------

    def test_set_many_stores_every_value_and_names_every_key(self, cache: BaseCache) -> None:
        assert sorted(cache.set_many(SAMPLE_VALUES)) == sorted(SAMPLE_VALUES)

        assert cache.get_many(*SAMPLE_VALUES) == list(SAMPLE_VALUES.values())

    def test_get_many_and_get_dict_answer_in_order_with_none_for_absent_keys(
        self, cache: BaseCache
    ) -> None:
        cache.set_many({"a": 1, "c": 3})

        assert cache.get_many("c", "absent", "a") == [3, None, 1]
        assert cache.get_dict("c", "absent", "a") == {"c": 3, "absent": None, "a": 1}

    def test_the_many_calls_accept_nothing(self, cache: BaseCache) -> None:
        assert cache.get_many() == []
        assert cache.get_dict() == {}
        assert cache.set_many({}) == []
        assert cache.delete_many() == []

    def test_delete_many_removes_the_keys_and_reports_every_key_asked(
        self, cache: BaseCache
    ) -> None:
        """Absent keys count as deleted: what is asked for is gone either way.

        DynamoDBCache documents this because BatchWriteItem cannot say which keys
        existed; cachelib (0.16 and later) counts an absent key as deleted too, so
        here the backends agree and the contract is one.
        """
        cache.set_many({"a": 1, "b": 2, "kept": 3})

        assert sorted(cache.delete_many("a", "b", "absent")) == ["a", "absent", "b"]
        assert cache.get_many("a", "b", "kept") == [None, None, 3]

    # --- counters -------------------------------------------------------------------

    def test_inc_and_dec_start_from_zero_and_return_the_new_value(self, cache: BaseCache) -> None:
        assert cache.inc("up") == 1
        assert cache.inc("up", 5) == 6
        assert cache.dec("up", 2) == 4
        assert cache.get("up") == 4
        assert cache.dec("down", 3) == -3

    def test_inc_continues_from_an_integer_set_before(self, cache: BaseCache) -> None:
        cache.set("counter", 10)

        assert cache.inc("counter") == 11
        assert cache.get("counter") == 11

    def test_concurrent_incs_lose_no_update(self, cache: BaseCache) -> None:
        def increment() -> list[int | None]:
            return [cache.inc("hits") for _ in range(INCREMENTS_PER_RACER)]

        seen = [value for values in run_together(increment, RACERS) for value in values]

        total = RACERS * INCREMENTS_PER_RACER
        assert cache.get("hits") == total
        assert sorted(seen) == list(range(1, total + 1)), "each inc returns its own new value"

    def test_of_concurrent_adds_exactly_one_wins(self, cache: BaseCache) -> None:
        """What the loader's lease stands on: one caller, and only one, takes it."""
        results = run_together(lambda: cache.add("lease", threading.get_ident()), RACERS)

        assert results.count(True) == 1
        assert results.count(False) == RACERS - 1

    # --- clear, key prefixes --------------------------------------------------------

    def test_clear_removes_every_entry(self, cache: BaseCache) -> None:
        cache.set_many({"a": 1, "b": 2})
        cache.inc("counter")

        assert cache.clear() is True
        assert cache.get_many("a", "b", "counter") == [None, None, None]

    def neighbours(self, make_cache: MakeCache) -> tuple[BaseCache, BaseCache]:
        """Two caches an app may configure side by side: one table under two prefixes,
        or, for a backend without key_prefix, two instances."""
        if self.TAKES_KEY_PREFIX:
            return make_cache(key_prefix="one:"), make_cache(key_prefix="two:")
        return make_cache(), make_cache()

    def test_neighbours_never_see_each_others_keys(self, make_cache: MakeCache) -> None:
        one, two = self.neighbours(make_cache)
        one.set("key", "one's")
        one.inc("counter")

        assert two.get("key") is None
        assert two.has("key") is False
        assert two.add("key", "two's") is True
        assert two.inc("counter") == 1
        assert one.get("key") == "one's"

    def test_clear_leaves_a_neighbours_entries_alone(self, make_cache: MakeCache) -> None:
        one, two = self.neighbours(make_cache)
        one.set("key", "one's")
        two.set("key", "two's")

        assert one.clear() is True
        assert (one.get("key"), two.get("key")) == (None, "two's")

    # --- timeouts -------------------------------------------------------------------

    def test_entries_expire_after_their_timeout_and_timeout_zero_never_does(
        self, make_cache: MakeCache
    ) -> None:
        """Every way to give an entry a timeout, checked once just before and once just after.

        ``set``, ``set_many`` and ``add`` with a timeout, and ``set`` with none on a cache
        whose default is short; an expired key reads as absent everywhere and may be
        added again, while ``timeout=0`` (and a default of 0) mean forever.
        """
        cache = make_cache(default_timeout=SHORT_TIMEOUT_SECONDS)
        forever = make_cache(default_timeout=0)
        start_early_in_a_second()
        cache.set("set", "value", timeout=SHORT_TIMEOUT_SECONDS)
        cache.set_many({"set_many": "value"}, timeout=SHORT_TIMEOUT_SECONDS)
        cache.add("add", "value", timeout=SHORT_TIMEOUT_SECONDS)
        cache.set("default", "value")
        cache.set("zero", "value", timeout=0)
        forever.set("default-zero", "value")
        written = time.time()
        short_lived = ["set", "set_many", "add", "default"]

        assert cache.get_many(*short_lived, "zero") == ["value"] * 5

        time.sleep(max(0.0, written + SHORT_TIMEOUT_SECONDS - time.time()) + EXPIRY_MARGIN_SECONDS)
        assert cache.get_many(*short_lived) == [None] * 4
        assert [cache.get(key) for key in short_lived] == [None] * 4
        assert [cache.has(key) for key in short_lived] == [False] * 4
        assert cache.add("add", "again") is True
        assert cache.get("add") == "again"
        assert cache.get("zero") == "value"
        assert forever.get("default-zero") == "value"


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
        return DynamoDBCache(
            table_name=table_name,
            default_timeout=default_timeout,
            key_prefix=key_prefix,
            endpoint_url=dynamodb_local.endpoint_url,
            region_name="us-east-1",
            create_table=True,
            signing_key=TEST_SIGNING_KEY,
            get_timeout=RELAXED_GET_TIMEOUT_SECONDS,
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
