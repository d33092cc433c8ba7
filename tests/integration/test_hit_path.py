"""ecommerce/categories/hit_path.py: GET /categories answered before Flask, as Flask answers it.

Every answer the hit path gives is compared with the one Flask's view and hooks give
to the same request (the layer switched off): status, every header in order, body,
the access line's fields and the metrics it counts.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.exc import OperationalError

from ecommerce import metrics
from ecommerce.categories import repository
from ecommerce.categories.cache_policy import categories_region
from ecommerce.categories.hit_path import ListHitPath
from ecommerce.metrics import DB_LOADS
from ecommerce.observability import ACCESS_FIELDS, ACCESS_LOGGER

ACCEPT_ENCODINGS = (
    None,
    "gzip",
    "gzip;q=0",
    "identity;q=0",
    "*;q=0",
    "x-gzip, identity;q=0.5",
    "br",
    ";;;not a header",
)
REQUEST_ID = "test-request-id"
TRACE_ID = "Root=1-67891233-abcdef012345678912345678"


def hit_path_of(app: Flask) -> ListHitPath:
    layer: Any = app.wsgi_app
    while not isinstance(layer, ListHitPath):
        layer = layer.app
    return layer


def if_none_match_values(app: Flask) -> list[str | None]:
    """No header, each variant's tag (strong and weak), both, ``*``, and a tag of nothing."""
    tags = [
        app.test_client().get("/categories", headers={"Accept-Encoding": coding}).headers["ETag"]
        for coding in ("identity", "gzip")
    ]
    return [None, *tags, f"W/{tags[1]}", ", ".join(tags), "*", '"not-a-tag"']


def answer(
    app: Flask, caplog: pytest.LogCaptureFixture, method: str, headers: dict[str, str]
) -> tuple[Any, ...]:
    """Everything a client and an operator see of one request."""
    counted = metrics.labelled(metrics.HTTP_REQUESTS, method, "/categories", "200")
    before = counted._value.get()
    caplog.clear()
    response = app.test_client().open("/categories", method=method, headers=headers)
    (line,) = [record for record in caplog.records if record.name == ACCESS_LOGGER.name]
    fields = dict(getattr(line, ACCESS_FIELDS))
    del fields["duration_ms"]
    return (
        response.status,
        list(response.headers.items()),
        response.data,
        line.getMessage().rsplit(" ", 2)[0],
        fields,
        line.__dict__.get("request_id"),
        counted._value.get() - before,
    )


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER.name):
        yield caplog


@pytest.mark.parametrize("cached", [True, False], ids=["hit", "miss"])
def test_every_answer_is_the_one_flask_gives(
    app: Flask, caplog_info: pytest.LogCaptureFixture, cached: bool
) -> None:
    hit_path = hit_path_of(app)
    region = categories_region(app)
    cases = itertools.product(
        ("GET", "HEAD"),
        ACCEPT_ENCODINGS,
        if_none_match_values(app),
        ({"X-Request-ID": REQUEST_ID}, {"X-Request-ID": REQUEST_ID, "X-Amzn-Trace-Id": TRACE_ID}),
    )
    compared = 0
    for method, accept_encoding, if_none_match, ids in cases:
        headers = dict(ids)
        if accept_encoding is not None:
            headers["Accept-Encoding"] = accept_encoding
        if if_none_match is not None:
            headers["If-None-Match"] = if_none_match
        answers = []
        for serving in (True, False):
            if not cached:
                region.forget()
            hit_path.serving = serving
            answers.append(answer(app, caplog_info, method, headers))
        assert answers[0] == answers[1], (method, headers)
        compared += 1
    assert hit_path.serving is False  # the last answer was Flask's, as intended
    assert compared == 2 * len(ACCEPT_ENCODINGS) * 7 * 2


def test_without_a_request_id_each_answer_gets_a_new_one(app: Flask) -> None:
    client = app.test_client()
    ids = {client.get("/categories").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert hit_path_of(app).serving is True


def test_a_read_that_fails_is_answered_by_flask_and_loads_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database down on a miss: the view raises the hit path's error (a 503 problem),
    the load is not tried a second time."""
    calls: list[None] = []

    def database_down() -> Any:
        calls.append(None)
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(repository, "list_categories_at_version", database_down)
    loads_before = DB_LOADS._value.get()

    response = app.test_client().get("/categories")

    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert len(calls) == 1
    assert DB_LOADS._value.get() == loads_before + 1
    assert hit_path_of(app).serving is True


@pytest.mark.parametrize(
    "add_hook",
    [
        lambda app, hook: app.before_request(hook),
        lambda app, hook: app.after_request(lambda response: (hook(), response)[1]),
        lambda app, hook: app.teardown_request(lambda error: hook()),
    ],
    ids=["before-request", "after-request", "teardown-request"],
)
def test_a_hook_it_does_not_know_sends_the_list_to_flask(
    app: Flask,
    caplog: pytest.LogCaptureFixture,
    add_hook: Callable[[Flask, Callable[[], None]], None],
) -> None:
    """An extension's hook must run on every request, the list's too: the layer stands down."""
    ran: list[None] = []
    add_hook(app, lambda: ran.append(None))

    with caplog.at_level(logging.WARNING, logger="ecommerce.categories.hit_path"):
        response = app.test_client().get("/categories")

    assert response.status_code == 200
    assert ran == [None]
    assert hit_path_of(app).serving is False
    (warning,) = [r for r in caplog.records if r.name == "ecommerce.categories.hit_path"]
    assert "is answered by Flask, not its hit path" in warning.getMessage()


def test_other_requests_go_to_flask(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/categories/").status_code in (308, 404)
    assert client.post("/categories", json={"name": "Toys"}).status_code == 201
    assert client.options("/categories").headers["Allow"]
    assert client.get("/categories/1").get_json()["name"] == "Electronics"
