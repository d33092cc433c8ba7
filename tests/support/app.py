"""The app as tests see it: seed data, request helpers, the admin token, database probes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from cache_backends.versioned import VersionedEntry

#: What ``init-db`` seeds, as ``GET /categories`` lists it.
SEED_CATEGORIES = [
    {"id": 1, "name": "Electronics"},
    {"id": 2, "name": "Clothing"},
    {"id": 3, "name": "Books"},
]
#: The first category a test creates on the seed data.
TOYS = {"id": 4, "name": "Toys"}
#: Writes are refused without a configured token; test apps have this one, and their
#: test clients send it unless a test sends its own Authorization header.
TEST_ADMIN_TOKEN = "test-admin-token"
ADMIN_AUTHORIZATION = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}

#: Marks a test or module to run once on SQLite (the local default) and once on
#: PostgreSQL (the production database): ``pytestmark = ON_BOTH_DATABASES``.
ON_BOTH_DATABASES = pytest.mark.parametrize("database_uri", ["sqlite", "postgresql"], indirect=True)


class AdminTestClient(FlaskClient):
    """A test client that carries the test admin token, as an operator's client would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_AUTHORIZATION"] = ADMIN_AUTHORIZATION["Authorization"]


def get_categories(client: FlaskClient) -> tuple[list[dict[str, Any]], str]:
    """``GET /categories``, which must answer 200: the list and its X-Cache."""
    response = client.get("/categories")
    assert response.status_code == 200
    return response.get_json(), response.headers["X-Cache"]


def post_category(client: FlaskClient, name: str) -> dict[str, Any]:
    """``POST /categories``, which must answer 201: the created category."""
    response = client.post("/categories", json={"name": name})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@contextmanager
def recorded_sql(app: Flask) -> Iterator[list[str]]:
    """Collect every SQL statement ``app`` sends while the block runs.

    A real SQLAlchemy event on the real engine: proof that a cache hit, or
    /healthz, never reached the database.
    """
    from ecommerce.extensions import db

    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def cached_categories(app: Flask) -> Any:
    """The list the app's cache holds as fresh right now (None: nothing, or not fresh).

    Decoded from the cached value, which must be the list's HTTP representation.
    """
    from ecommerce.categories.representation import Representation

    with app.app_context():
        entry = cached_entry()
    if entry is None or not entry.is_fresh(time.time()):
        return None
    assert isinstance(entry.value, Representation), type(entry.value)
    return entry.value.decoded()


def cached_entry() -> VersionedEntry | None:
    """What the running app's cache holds under the categories key right now."""
    from ecommerce.categories.cache_policy import CATEGORIES_CACHE_KEY, categories_region

    entry = categories_region().loader.cache.get(CATEGORIES_CACHE_KEY)
    if not isinstance(entry, VersionedEntry):
        return None
    return categories_region().loader.resolved(entry)


def categories_in_db(app: Flask) -> list[dict[str, Any]]:
    """The categories table read straight from the database, bypassing any cache."""
    from ecommerce.categories.cache_policy import load_categories_from_db

    with app.app_context():
        return [dict(category) for category in load_categories_from_db()[0].decoded()]
