"""The contract of a Flask-Caching backend, shipped so that a backend of your own runs it.

In the spirit of cachelib's ``tests/common.py`` and dogpile's
``dogpile/testing/fixtures.py``: :class:`CacheContract` states what the app,
Flask-Caching's decorators and :class:`~cache_backends.region.Region` rely on from a
``BaseCache`` (get/set/add/delete/has, the ``*_many`` calls, ``get_dict``,
``inc``/``dec``, ``clear``, timeouts with 0 meaning forever, expiry, values of any
picklable type, key-prefix isolation, and the version-fenced store every region write
goes through). A test class of yours inherits it and provides ``make_cache``::

    import pytest
    from cache_backends.testing import CacheContract

    class TestMyCache(CacheContract):
        @pytest.fixture
        def make_cache(self):
            def make(default_timeout=300, key_prefix=None):
                return MyCache(default_timeout=default_timeout, key_prefix=key_prefix)

            return make

Where a backend deliberately differs, its class sets a flag (``TAKES_KEY_PREFIX``,
``MAX_VALUE_BYTES``, ``READ_ONLY_VALUES``) that the contract reads: nothing is
skipped. This repository runs it on SimpleCache, DynamoDBCache and NearCache
(``tests/integration/test_cache_contract.py``).

The only module of ``cache_backends`` that imports pytest: import it from tests.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask_caching.backends.base import BaseCache

from cache_backends.strict import strict_interface
from cache_backends.versioned import VersionedEntry, store_entry

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
#: Enough concurrent callers to interleave on a 2-core machine, few enough to be quick.
RACERS = 4
INCREMENTS_PER_RACER = 10
#: DynamoDB's item limit, documented in DynamoDBCache's docstring ("Cost and limits"):
#: the contract's large value is beyond it, as it is beyond many stores' single item.
DYNAMODB_ITEM_LIMIT_BYTES = 400 * 1024
#: Fresh until 2100-01-01: the fenced-store tests look at ranks, not at expiry.
FAR_FUTURE = 4_102_444_800.0
#: Seconds the fenced-store tests' entries are kept.
VERSIONED_TIMEOUT_SECONDS = 60


def loaded_at(version: int) -> VersionedEntry:
    """A value loaded at ``version``, as a region stores it (fixed times: equal ones are equal)."""
    return VersionedEntry(f"prices@{version}", version, version, FAR_FUTURE, FAR_FUTURE + 30)


def start_early_in_a_second(latest_fraction: float = 0.8) -> None:
    """Wait (at most 0.2 s) until early in a wall-clock second.

    Expiry kept in whole seconds is rounded down (SimpleCache's), so an entry written
    at x.99 with a 1 s timeout lives 10 ms; starting early leaves time to read it back.
    """
    fraction = time.time() % 1
    if fraction > latest_fraction:
        time.sleep(1 - fraction)


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

    # --- the fenced store a region writes through (cache_backends.versioned) ---------

    def store(self, cache: BaseCache, entry: VersionedEntry, **options: Any) -> bool:
        """What a region's every store is: through the strict interface, fenced by rank."""
        return store_entry(
            strict_interface(cache), "versioned", entry, VERSIONED_TIMEOUT_SECONDS, **options
        )

    def test_a_fenced_store_never_replaces_a_higher_version(self, cache: BaseCache) -> None:
        """A slow load of an older snapshot must not replace a newer one (``set_versioned``)."""
        assert self.store(cache, loaded_at(2)) is True

        assert self.store(cache, loaded_at(1)) is False
        assert cache.get("versioned") == loaded_at(2)
        assert self.store(cache, VersionedEntry.tombstone(3)) is True
        assert self.store(cache, loaded_at(2)) is False
        assert self.store(cache, loaded_at(3)) is True, "at one version a value beats a tombstone"
        assert cache.get("versioned") == loaded_at(3)

    def test_a_fenced_store_with_the_entry_it_replaces_is_a_compare_and_set(
        self, cache: BaseCache
    ) -> None:
        """What marking a value stale stands on: it lands only on the entry it was read from."""
        self.store(cache, loaded_at(1))
        stale = loaded_at(1).marked_stale(2, FAR_FUTURE)

        assert self.store(cache, stale, replacing=loaded_at(5)) is False
        assert cache.get("versioned") == loaded_at(1)
        assert self.store(cache, stale, replacing=loaded_at(1)) is True
        assert cache.get("versioned") == stale

    def test_of_concurrent_fenced_stores_the_highest_version_stays(self, cache: BaseCache) -> None:
        versions = iter(range(1, RACERS + 1))
        lock = threading.Lock()

        def store_next() -> bool:
            with lock:
                version = next(versions)
            return self.store(cache, loaded_at(version))

        run_together(store_next, RACERS)

        assert cache.get("versioned") == loaded_at(RACERS)
