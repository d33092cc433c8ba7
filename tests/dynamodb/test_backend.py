"""backend.py: the Flask-Caching edge never raises, its manual matches the settings, and
``.strict`` is where failures show."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from cachelib.serializers import JSONSerializer

from cache_backends.dynamodb.backend import DynamoDBCache
from cache_backends.dynamodb.settings import SETTINGS
from cache_backends.dynamodb.store import DynamoDBStore
from cache_backends.strict import CacheUnavailable, strict_interface
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.caches import TEST_SIGNING_KEY
from tests.support.dynamodb import CallLog, MakeCache, flask_cache

#: Each strict operation, and what the BaseCache edge answers when it fails.
OPERATIONS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "get": (lambda cache: cache.get("k"), None),
    "get_many": (lambda cache: cache.get_many("a", "b"), [None, None]),
    "has": (lambda cache: cache.has("k"), False),
    "set": (lambda cache: cache.set("k", 1), False),
    "add": (lambda cache: cache.add("k", 1), False),
    "set_many": (lambda cache: cache.set_many({"a": 1}), []),
    "set_versioned": (lambda cache: cache.set_versioned("k", 1, 2), False),
    "delete": (lambda cache: cache.delete("k"), False),
    "delete_many": (lambda cache: cache.delete_many("a"), []),
    "clear": (lambda cache: cache.clear(), False),
    "inc": (lambda cache: cache.inc("n"), None),
    "dec": (lambda cache: cache.dec("n"), None),
}


def test_nothing_raises_when_dynamodb_is_unreachable(
    make_down_cache: MakeCache, unused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_down_cache(unused_port, breaker_failures=0)
    with caplog.at_level(logging.WARNING):
        for operation, fallback in OPERATIONS.values():
            assert operation(cache) == fallback
        assert cache.health()["ok"] is False
    assert "GetItem" in caplog.text and "failed" in caplog.text


def test_the_strict_interface_raises_where_the_edge_answers_a_miss(
    make_down_cache: MakeCache, unused_port: int
) -> None:
    cache = make_down_cache(unused_port, breaker_failures=0)
    for name, (operation, fallback) in OPERATIONS.items():
        with pytest.raises(CacheUnavailable, match="failed"):
            operation(cache.strict)
        assert operation(cache) == fallback, name


def test_an_open_circuit_is_unavailable_to_the_strict_interface(
    make_down_cache: MakeCache, unused_port: int
) -> None:
    cache = make_down_cache(unused_port, breaker_failures=1, breaker_cooldown=60)
    assert cache.get("k") is None  # fails, and opens the circuit

    with pytest.raises(CacheUnavailable, match="circuit open"):
        cache.strict.get("k")
    assert cache.get("k") is None


def test_the_strict_interface_is_found_as_the_layers_above_look_for_it(
    cache: DynamoDBCache,
) -> None:
    assert isinstance(cache.strict, DynamoDBStore)
    assert strict_interface(cache) is cache.strict


def test_flask_caching_memoize_works_on_batches(
    dynamodb_local: DynamoDBLocal, table_name: str, calls: CallLog
) -> None:
    """memoize keeps version keys and reads them with get_many on every call."""
    app, cache = flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_CREATE_TABLE": True,
            "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
        }
    )
    loads: list[int] = []

    @cache.memoize(timeout=60)
    def square(number: int) -> int:
        loads.append(number)
        return number * number

    with app.app_context():
        assert [square(3), square(3), square(4)] == [9, 9, 16]
        assert loads == [3, 4]
        cache.delete_memoized(square, 3)
        assert square(3) == 9
    assert loads == [3, 4, 3]
    assert "BatchGetItem" in calls.operations()


def test_serializer_is_injectable(make_cache: MakeCache, raw_table: Any) -> None:
    cache = make_cache()
    cache.serializer = JSONSerializer()
    assert cache.set("k", {"a": [1, 2]})
    assert cache.get("k") == {"a": [1, 2]}
    stored = raw_table.get_item(Key={"cache_key": "k"})["Item"]["value"].value
    assert stored.endswith(b'{"a": [1, 2]}'), "signing wraps what the serializer produced"


def test_a_signing_key_is_required(dynamodb_local: DynamoDBLocal) -> None:
    with pytest.raises(ValueError, match="signing_key"):
        DynamoDBCache(endpoint_url=dynamodb_local.endpoint_url)


# -- the manual and the settings: one list ------------------------------------------


def _settings_table(docstring: str) -> list[tuple[str, str]]:
    """The (name, description) rows of the reST table in ``docstring``."""
    lines = [line.strip() for line in docstring.splitlines()]
    borders = [number for number, line in enumerate(lines) if re.fullmatch(r"=+ +=+", line)]
    first, last = borders[0], borders[-1]
    rows = [re.split(r"\s{2,}", line, maxsplit=1) for line in lines[first + 1 : last]]
    return [(name, description) for name, description in rows]


def test_the_manual_lists_exactly_the_settings() -> None:
    assert _settings_table(DynamoDBCache.__doc__ or "") == [
        (f"``{setting.name}``", setting.doc) for setting in SETTINGS
    ]


def test_the_constructor_defaults_are_the_settings_defaults() -> None:
    """``DynamoDBCache(...)`` built by hand behaves as a Flask app that sets nothing."""
    parameters = inspect.signature(DynamoDBCache).parameters
    assert {setting.field: parameters[setting.field].default for setting in SETTINGS} == {
        setting.field: setting.default for setting in SETTINGS
    }
