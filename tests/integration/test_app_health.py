"""GET /healthz: alive whatever the database or cache do."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from tests.support.app import recorded_sql


def test_healthz_answers_ok_without_database_or_cache(make_app: Callable[..., Flask]) -> None:
    """No schema and a cache that raises on every call: /healthz must not notice either."""
    app = make_app(init_db=False, TESTING=False, CACHE_TYPE="tests.support.caches.RaisingCache")
    client = app.test_client()
    assert client.get("/categories").status_code == 503  # the set-up really is broken

    with recorded_sql(app) as statements:
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert statements == []
