"""ADMIN_TOKEN: when set, creating a category needs ``Authorization: Bearer <token>``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from tests.conftest import cached_categories, categories_in_db
from tests.test_errors import assert_problem

#: Contains "=" on purpose: werkzeug would parse such a token as auth parameters.
ADMIN_TOKEN = "s3cret-token=="


@pytest.fixture
def protected_app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app(ADMIN_TOKEN=ADMIN_TOKEN)
    app.test_client().get("/categories")  # warm the cache, so a stray write would show
    return app


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token",
        f"Bearer {ADMIN_TOKEN}x",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
    ],
)
def test_post_without_the_right_bearer_token_is_401_and_changes_nothing(
    protected_app: Flask, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    database_before = categories_in_db(protected_app)
    cache_before = cached_categories(protected_app)

    response = protected_app.test_client().post(
        "/categories", json={"name": "Toys"}, headers=headers
    )

    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert categories_in_db(protected_app) == database_before
    assert cached_categories(protected_app) == cache_before


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_post_with_the_token_is_created(protected_app: Flask, scheme: str) -> None:
    response = protected_app.test_client().post(
        "/categories", json={"name": "Toys"}, headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"}
    )

    assert response.status_code == 201


def test_reads_need_no_token(protected_app: Flask) -> None:
    assert protected_app.test_client().get("/categories").status_code == 200


def test_without_admin_token_posts_are_open(client) -> None:
    assert client.post("/categories", json={"name": "Toys"}).status_code == 201
