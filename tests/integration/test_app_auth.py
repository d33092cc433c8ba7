"""ADMIN_TOKEN: writes need ``Authorization: Bearer <token>``, and are refused without one set."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from tests.support.app import cached_categories, categories_in_db
from tests.support.problems import assert_problem

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


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/categories", {"name": "Toys"}),
        ("patch", "/categories/1", {"name": "Gadgets"}),
        ("delete", "/categories/1", None),
    ],
)
def test_without_an_admin_token_configured_writes_are_refused_with_403(
    make_app: Callable[..., Flask], method: str, path: str, body: dict[str, str] | None
) -> None:
    """Closed by default: a forgotten variable never leaves the catalogue writable."""
    app = make_app(ADMIN_TOKEN=None)
    database_before = categories_in_db(app)

    response = getattr(app.test_client(), method)(path, json=body)

    assert "ADMIN_TOKEN" in assert_problem(response, 403)["detail"]
    assert categories_in_db(app) == database_before


def test_several_tokens_are_accepted_while_rotating(make_app: Callable[..., Flask]) -> None:
    app = make_app(ADMIN_TOKEN=["new-token", "old-token"])
    client = app.test_client()

    for token, name in (("old-token", "Toys"), ("new-token", "Games")):
        response = client.post(
            "/categories", json={"name": name}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201
    assert_problem(
        client.post("/categories", json={"name": "X"}, headers={"Authorization": "Bearer other"}),
        401,
    )
