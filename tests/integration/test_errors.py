"""Every error is problem+json, and bad input changes nothing in the database or cache."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, text

from devtools.postgresql import LocalPostgreSQL
from ecommerce.categories import repository
from ecommerce.categories.models import MAX_CATEGORY_ID
from ecommerce.config import MAX_REQUEST_BODY_BYTES
from ecommerce.extensions import db
from tests.support.app import ON_BOTH_DATABASES, cached_categories, categories_in_db
from tests.support.problems import assert_problem

JSON = "application/json"
#: Valid JSON with a fine name, only too big: the size limit alone must refuse it.
OVERSIZED_BODY = b'{"name": "' + b"x" * MAX_REQUEST_BODY_BYTES + b'"}'


@pytest.fixture
def warm_app(app: Flask) -> Flask:
    """An app whose cache holds the seed list, so a stray invalidation would show."""
    assert app.test_client().get("/categories").headers["X-Cache"] == "MISS"
    return app


@pytest.mark.parametrize(
    ("body", "content_type", "status", "detail_mentions"),
    [
        (b'{"name": "Toys"', JSON, 400, "not valid JSON"),
        (b"", JSON, 400, "not valid JSON"),
        (b'["Toys"]', JSON, 400, "JSON object"),
        (b'"Toys"', JSON, 400, "JSON object"),
        (b"null", JSON, 400, "JSON object"),
        (b"{}", JSON, 400, "required"),
        (b'{"title": "Toys"}', JSON, 400, "required"),
        (b'{"name": 42}', JSON, 400, "string"),
        (b'{"name": null}', JSON, 400, "string"),
        (b'{"name": ["Toys"]}', JSON, 400, "string"),
        (b'{"name": ""}', JSON, 400, "blank"),
        (b'{"name": "   \\t "}', JSON, 400, "blank"),
        (b'{"name": "' + b"x" * 101 + b'"}', JSON, 400, "100"),
        (b'{"name": "Books"}', JSON, 409, "already exists"),
        (b'{"name": "  bOOks "}', JSON, 409, "already exists"),
        (b'{"name": "Toys"}', "text/plain", 415, "application/json"),
        (b"name=Toys", "application/x-www-form-urlencoded", 415, "application/json"),
        (b'{"name": "Toys"}', None, 415, "application/json"),
        (OVERSIZED_BODY, JSON, 413, "larger than"),
        # Hostile input: each of these was a 500 (a traceback in the log) once.
        (b'{"name": "\\ud800"}', JSON, 400, "lone surrogate"),  # a JSON-escaped lone surrogate
        (b'{"name": "\xed\xa0\x80"}', JSON, 400, "lone surrogate"),  # the same, as raw bytes
        (b"[" * 5000 + b"]" * 5000, JSON, 400, "nested too deeply"),
        (b'{"a":' * 2500 + b"1" + b"}" * 2500, JSON, 400, "nested too deeply"),
    ],
)
def test_bad_post_is_refused_and_changes_nothing(
    warm_app: Flask,
    body: bytes,
    content_type: str | None,
    status: int,
    detail_mentions: str,
) -> None:
    database_before = categories_in_db(warm_app)
    cache_before = cached_categories(warm_app)

    response = warm_app.test_client().post("/categories", data=body, content_type=content_type)

    assert detail_mentions in assert_problem(response, status)["detail"]
    assert categories_in_db(warm_app) == database_before
    assert cached_categories(warm_app) == cache_before


@ON_BOTH_DATABASES
def test_a_duplicate_inserted_concurrently_is_refused_by_the_unique_index_as_409(
    warm_app: Flask, database_uri: str
) -> None:
    """The race the existence check cannot see: another writer commits "toys" after it ran.

    A second real connection inserts the row between the app's existence check
    and its insert, as a concurrent request would; the unique index on
    lower(name) must refuse the app's insert, and the API must answer 409.
    """
    concurrent_writer = create_engine(database_uri)
    cache_before = cached_categories(warm_app)
    fired: list[str] = []

    def insert_concurrently(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not fired and statement.startswith("INSERT INTO categories"):
            fired.append(statement)
            with concurrent_writer.begin() as other:
                other.execute(
                    text("INSERT INTO categories (name, name_key) VALUES ('toys', 'toys')")
                )

    with warm_app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", insert_concurrently)
    try:
        response = warm_app.test_client().post("/categories", json={"name": "Toys"})
    finally:
        event.remove(engine, "before_cursor_execute", insert_concurrently)
        concurrent_writer.dispose()

    assert fired, "the app never tried to insert"
    assert_problem(response, 409)
    assert [c["name"] for c in categories_in_db(warm_app)] == [
        "Electronics",
        "Clothing",
        "Books",
        "toys",
    ]
    assert cached_categories(warm_app) == cache_before


def test_a_chunked_body_over_the_limit_is_a_413_not_a_400(warm_app: Flask) -> None:
    """No Content-Length: Werkzeug cuts the stream at the limit, which must not parse as 400.

    ``wsgi.input_terminated`` and no Content-Length is what gunicorn hands over
    for ``Transfer-Encoding: chunked``.
    """
    database_before = categories_in_db(warm_app)
    chunked = {"wsgi.input_terminated": True}

    response = warm_app.test_client().post(
        "/categories",
        input_stream=io.BytesIO(OVERSIZED_BODY),
        content_type=JSON,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides=chunked,
    )
    small = warm_app.test_client().post(
        "/categories",
        input_stream=io.BytesIO(b'{"name": "Toys"}'),
        content_type=JSON,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides=chunked,
    )

    assert "larger than" in assert_problem(response, 413)["detail"]
    assert small.status_code == 201  # chunked itself is fine
    assert categories_in_db(warm_app) == [*database_before, small.get_json()]


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
@pytest.mark.parametrize("category_id", [MAX_CATEGORY_ID + 1, 99999999999999999999])
def test_an_id_beyond_the_database_integer_is_a_404_not_an_overflow(
    warm_app: Flask, method: str, category_id: int
) -> None:
    database_before = categories_in_db(warm_app)

    response = getattr(warm_app.test_client(), method)(
        f"/categories/{category_id}", json={"name": "Toys"}
    )

    assert_problem(response, 404)
    assert categories_in_db(warm_app) == database_before


def test_unknown_route_is_a_404_problem(client: FlaskClient) -> None:
    assert_problem(client.get("/no-such-page"), 404)


def test_unknown_category_is_a_404_problem(client: FlaskClient) -> None:
    problem = assert_problem(client.get("/categories/999"), 404)

    assert "999" in problem["detail"]


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_wrong_method_is_a_405_problem_listing_the_allowed_ones(
    client: FlaskClient, method: str
) -> None:
    response = getattr(client, method)("/categories")

    assert_problem(response, 405)
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))


def test_an_unhandled_error_is_a_500_problem_without_internals(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug deep in the read path: the client learns nothing of it but the status."""
    app = make_app(TESTING=False)

    def broken_query() -> None:
        raise KeyError("SELECT secret FROM internals")

    monkeypatch.setattr(repository, "list_categories_at_version", broken_query)
    response = app.test_client().get("/categories")

    problem = assert_problem(response, 500)
    for internal in ("Traceback", "KeyError", "secret", "SELECT"):
        assert internal not in problem["detail"]


def test_a_missing_schema_is_a_503_naming_nothing_internal(make_app: Callable[..., Flask]) -> None:
    """init-db never ran: the database answers, but not with this release's tables."""
    app = make_app(init_db=False, TESTING=False)

    response = app.test_client().get("/categories")

    problem = assert_problem(response, 503)
    for internal in ("sqlite", "categories", "OperationalError", "SELECT"):
        assert internal not in problem["detail"]


def test_a_database_too_slow_to_answer_is_a_503_with_retry_after_and_changes_nothing(
    make_app: Callable[..., Flask], postgresql: LocalPostgreSQL
) -> None:
    """A statement past DATABASE_STATEMENT_TIMEOUT_MS is cancelled: 503, not a 500 or a hang.

    Another session holds an exclusive lock on the table, as a long migration or a
    stuck transaction would, so the app's statements wait until PostgreSQL cancels them.
    """
    database_uri = postgresql.create_database()
    app = make_app(SQLALCHEMY_DATABASE_URI=database_uri, DATABASE_STATEMENT_TIMEOUT_MS=200)
    client = app.test_client()
    blocker = create_engine(database_uri)
    with blocker.connect() as connection:
        connection.execute(text("LOCK TABLE categories IN ACCESS EXCLUSIVE MODE"))
        write = client.post("/categories", json={"name": "Toys"})
        read = client.get("/categories")
        connection.rollback()
    blocker.dispose()

    for response in (write, read):
        assert "try again" in assert_problem(response, 503)["detail"]
        assert response.headers["Retry-After"] == "5"
    assert [category["name"] for category in categories_in_db(app)] == [
        "Electronics",
        "Clothing",
        "Books",
    ]
    assert client.get("/categories").status_code == 200
