"""``flask init-db``: schema and seed data, idempotent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask

from ecommerce.categories.cache_policy import CATEGORIES_CACHE_KEY
from ecommerce.extensions import cache
from tests.support import app as story

pytestmark = story.ON_BOTH_DATABASES

SEED = [
    {"id": 1, "name": "Electronics"},
    {"id": 2, "name": "Clothing"},
    {"id": 3, "name": "Books"},
]


def test_init_db_creates_the_schema_and_seeds_the_categories(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(init_db=False)

    result = app.test_cli_runner().invoke(args=["init-db"])

    assert result.exit_code == 0, result.output
    assert "Schema: upgraded from an empty database to 0004_catalogue_triggers" in result.output
    assert "Seeded categories: Electronics, Clothing, Books" in result.output
    assert story.categories_in_db(app) == SEED


def test_init_db_again_changes_nothing(make_app: Callable[..., Flask]) -> None:
    app = make_app()  # init-db ran once
    app.test_client().post("/categories", json={"name": "Toys"})

    result = app.test_cli_runner().invoke(args=["init-db"])

    assert result.exit_code == 0, result.output
    assert "nothing to upgrade" in result.output
    assert "nothing added" in result.output
    assert story.categories_in_db(app) == [*SEED, {"id": 4, "name": "Toys"}]


def test_seeding_invalidates_a_list_cached_from_another_database(
    make_app: Callable[..., Flask],
) -> None:
    """A shared cache may still hold the list of a database that was replaced."""
    app = make_app(init_db=False)
    with app.app_context():
        cache.set(CATEGORIES_CACHE_KEY, [{"id": 1, "name": "Stale"}])

    app.test_cli_runner().invoke(args=["init-db"])

    assert story.cached_categories(app) is None


def test_init_db_of_a_new_database_drops_the_list_another_database_left_cached(
    make_story_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """Versions start again in a new database: a list cached at a higher one must not block it."""
    first = make_story_app()
    story.post_category(first.test_client(), "Toys")
    assert story.get_categories(first.test_client())[0] == [
        *story.SEED_CATEGORIES,
        story.TOYS,
    ]  # cached, version 4

    second = make_story_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'new.sqlite'}")

    client = second.test_client()
    assert story.get_categories(client) == (story.SEED_CATEGORIES, "MISS")
    assert story.get_categories(client) == (story.SEED_CATEGORIES, "HIT")


def test_init_db_reset_starts_again_from_the_seed_data(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    assert client.post("/categories", json={"name": "Toys"}).status_code == 201
    client.get("/categories")  # cache the list with Toys

    result = app.test_cli_runner().invoke(args=["init-db", "--reset", "--yes"])

    assert result.exit_code == 0, result.output
    assert "Dropped the tables" in result.output
    assert story.categories_in_db(app) == story.SEED_CATEGORIES
    assert client.get("/categories").get_json() == story.SEED_CATEGORIES  # the cache forgot Toys


def test_init_db_reset_asks_first_and_changes_nothing_without_an_answer(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    app.test_client().post("/categories", json={"name": "Toys"})

    result = app.test_cli_runner().invoke(args=["init-db", "--reset"], input="")

    assert result.exit_code == 1
    assert "--yes" in result.output
    assert [category["name"] for category in story.categories_in_db(app)][-1] == "Toys"
