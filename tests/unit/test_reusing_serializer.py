"""cache_backends/frozen.py's ReusingSerializer on cachelib's SimpleCache: an immutable
value is unpickled once per stored copy; anything mutable is a fresh copy per get."""

from __future__ import annotations

from cachelib import SimpleCache

from cache_backends.frozen import ReusingSerializer
from ecommerce.categories.representation import ContentCoding, Representation


def _cache() -> SimpleCache:
    cache = SimpleCache()
    cache.serializer = ReusingSerializer(kept=2)
    return cache


def test_an_immutable_value_is_unpickled_once_per_stored_copy() -> None:
    cache = _cache()
    representation = Representation.of([{"id": 1, "name": "Toys"}])
    cache.set("list", representation)
    first, second = cache.get("list"), cache.get("list")
    assert first is second
    assert first == representation and first is not representation  # unpickled, once
    # What it memoizes is kept with it: the identity body is decompressed once.
    assert first.body(ContentCoding.IDENTITY) is second.body(ContentCoding.IDENTITY)

    cache.set("list", Representation.of([{"id": 1, "name": "Games"}]))
    third = cache.get("list")
    assert third is not first and third.decoded() == [{"id": 1, "name": "Games"}]


def test_a_mutable_value_is_a_copy_of_its_own_per_get() -> None:
    cache = _cache()
    cache.set("list", [{"id": 1}])
    mine = cache.get("list")
    mine.append({"id": 2})
    assert cache.get("list") == [{"id": 1}]
    assert cache.get("list") is not cache.get("list")


def test_it_keeps_a_bounded_number_of_values() -> None:
    cache = _cache()
    for number in range(5):
        cache.set(f"key-{number}", f"value-{number}")
        assert cache.get(f"key-{number}") == f"value-{number}"
    assert len(cache.serializer._values) == 2
    assert [cache.get(f"key-{number}") for number in range(5)] == [
        f"value-{number}" for number in range(5)
    ]
