"""``make bench-fleet``'s windows on a small fleet (one instance of two workers on PostgreSQL,
300 natural-named categories, 2 s windows): what DynamoDB sees, counted by the proxy, and
what the database sees, counted by the app's own metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.fleet import BODY_MARK, HEADER, Shape, measure, parse
from benchmarks.http.catalogue import build_catalogue
from devtools.dynamodb_local import DynamoDBLocal
from devtools.dynamodb_proxy import DynamoDBProxy
from devtools.postgresql import LocalPostgreSQL

pytestmark = pytest.mark.slow

#: Near copies of 1 s even while the listener is live: each 2 s window then reads the pointer.
SMOKE_ARGS = [
    *("--seconds", "2", "--rate", "10", "--categories", "300"),
    *("--near-ttl-while-listening", "1"),
    # Every read of the list throttled: an instance reads it about once a second, and a
    # share below 1 of two reads may throttle none of them.
    *("--throttled-share", "1"),
]


def test_an_idle_instance_writes_nothing_and_a_failing_table_costs_the_database_nothing(
    dynamodb_local: DynamoDBLocal, postgresql: LocalPostgreSQL, tmp_path: Path
) -> None:
    arguments = parse(SMOKE_ARGS)
    catalogue = build_catalogue(tmp_path, arguments.categories, natural=True)
    shape = Shape(1, 2)
    with DynamoDBProxy(dynamodb_local.endpoint_url) as proxy:
        windows = {
            window.name: window
            for window in measure(
                shape, catalogue, dynamodb_local, proxy, arguments, postgresql.create_database()
            )
        }
    print("\n".join([HEADER, *(window.row(shape) for window in windows.values())]))

    assert windows["idle"].units(reads=False) == 0, "an idle instance writes"
    assert windows["traffic"].x_cache["HIT"] > 0
    for failing in ("throttled", "hung"):
        assert windows[failing].db_loads == 0, f"{failing}: the database took the load"
        assert "error" not in windows[failing].x_cache
    assert any(call.throttled for call in windows["throttled"].calls)
    change = windows["change"]
    assert change.db_loads == 1, "a change was loaded more than once by its instance"
    assert not [
        call
        for call in change.calls
        if BODY_MARK in (call.key or "") and call.operation == "GetItem"
    ], "the instance that stored a body read it back"
    changes = int(arguments.seconds) - 1  # changing_every_second's
    assert windows["changes"].db_loads <= changes, "a change was loaded more than once"
