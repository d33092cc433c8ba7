"""ETag, If-None-Match and Cache-Control on the reads, on both backends.

A 304 must cost no database work: proven with the real engine's SQL events
(``recorded_sql``) and the app's own ``ecommerce_db_loads_total``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from ecommerce.metrics import DB_LOADS
from tests.support.app import SEED_CATEGORIES, post_category, recorded_sql

LIST = "/categories"


def tag_of(app: Flask, path: str = LIST) -> str:
    response = app.test_client().get(path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-cache"
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")  # strong
    return etag


def test_the_current_tag_gets_a_304_with_no_body_and_no_database_work(
    make_story_app: Callable[..., Flask],
) -> None:
    app = make_story_app()
    etag = tag_of(app)  # the MISS: loads and caches the list
    client = app.test_client()
    loads_before = DB_LOADS._value.get()

    with recorded_sql(app) as statements:
        response = client.get(LIST, headers={"If-None-Match": etag})
        head = client.head(LIST, headers={"If-None-Match": etag})

    assert (response.status_code, response.data) == (304, b"")
    assert head.status_code == 304
    assert response.headers["ETag"] == etag
    assert response.headers["X-Cache"] == "HIT"
    assert statements == []
    assert DB_LOADS._value.get() == loads_before


@pytest.mark.parametrize(
    "if_none_match",
    ['"not-the-tag"', "W/{etag}", '"other", {etag}', "*"],
    ids=["other-tag", "weak-form", "in-a-list", "star"],
)
def test_if_none_match_follows_rfc_9110(
    make_story_app: Callable[..., Flask], if_none_match: str
) -> None:
    """Weak comparison for If-None-Match: W/"x" matches "x"; "*" matches any current body."""
    app = make_story_app()
    etag = tag_of(app)
    response = app.test_client().get(
        LIST, headers={"If-None-Match": if_none_match.format(etag=etag)}
    )
    assert response.status_code == (200 if if_none_match == '"not-the-tag"' else 304)


def test_every_write_changes_the_tag_and_the_old_one_gets_the_new_list(
    make_story_app: Callable[..., Flask],
) -> None:
    app = make_story_app()
    client = app.test_client()
    etag = tag_of(app)

    post_category(client, "Toys")
    response = client.get(LIST, headers={"If-None-Match": etag})

    assert response.status_code == 200
    assert response.get_json()[:3] == SEED_CATEGORIES
    assert response.headers["ETag"] != etag
    client.delete("/categories/4")
    assert tag_of(app) == etag  # the same list, the same tag: it is the body's


def test_apps_that_serve_the_same_list_give_it_the_same_tag(
    make_story_app: Callable[..., Flask],
) -> None:
    """Two instances behind one load balancer must agree, or a 304 depends on the instance."""
    assert tag_of(make_story_app()) == tag_of(make_story_app())


def test_one_category_is_tagged_and_revalidated_too(app: Flask) -> None:
    etag = tag_of(app, "/categories/1")
    client = app.test_client()
    assert client.get("/categories/1", headers={"If-None-Match": etag}).status_code == 304
    client.patch("/categories/1", json={"name": "Gadgets"})
    renamed = client.get("/categories/1", headers={"If-None-Match": etag})
    assert (renamed.status_code, renamed.get_json()["name"]) == (200, "Gadgets")


def test_errors_and_writes_stay_unstored_and_untagged(app: Flask) -> None:
    client = app.test_client()
    missing = client.get("/categories/999")
    created = client.post("/categories", json={"name": "Toys"})
    for response in (missing, created):
        assert response.headers["Cache-Control"] == "no-store"
        assert "ETag" not in response.headers
