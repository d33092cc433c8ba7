"""The categories story: cache-aside reads, TTL expiry, invalidation and write-through.

The story tests run twice: with SimpleCache and with the DynamoDB backend on
DynamoDB Local, because the app must tell the same story whatever the backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_caching.backends.simplecache import SimpleCache

from cache_backends.testing import start_early_in_a_second
from cache_backends.versioned import VersionedEntry
from ecommerce.categories.cache_policy import categories_region
from ecommerce.categories.models import NAME_MAX_LENGTH
from ecommerce.categories.representation import Representation, encode_json
from tests.support.app import (
    ON_BOTH_DATABASES,
    SEED_CATEGORIES,
    TOYS,
    cached_categories,
    categories_in_db,
    get_categories,
    post_category,
    recorded_sql,
)

# The repository's claims, on the database production uses too.
pytestmark = ON_BOTH_DATABASES

#: Slow enough to measure on a busy 2-core machine, short enough to keep the suite fast.
DB_LATENCY_MS = 200
#: Both backends store expiry in whole epoch seconds, rounded down.
EXPIRY_GRANULARITY_SECONDS = 1.0
POLL_INTERVAL_SECONDS = 0.05


#: The body of the seed list: SizeLimitedCache refuses anything larger.
SEED_BODY = encode_json(SEED_CATEGORIES)


class SizeLimitedCache(SimpleCache):
    """Refuses lists longer than the seed list, as DynamoDB refuses items over 400 KB."""

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        if isinstance(value, VersionedEntry):  # a value stored in its entry
            value = value.value
        if isinstance(value, Representation) and len(value.identity_body) > len(SEED_BODY):
            return False
        return super().set(key, value, timeout)


def post_toys_to_a_warm_cache(app: Flask) -> Flask:
    """Cache the seed list, then create Toys: the moment the two strategies differ."""
    client = app.test_client()
    # A HIT already under write-through: init-db wrote its seed list through.
    assert get_categories(client)[0] == SEED_CATEGORIES
    assert post_category(client, "Toys") == TOYS
    return app


def test_first_get_misses_then_hits_without_touching_the_database(
    make_story_app: Callable[..., Flask],
) -> None:
    client = make_story_app().test_client()

    assert get_categories(client) == (SEED_CATEGORIES, "MISS")
    with recorded_sql(client.application) as statements:
        assert get_categories(client) == (SEED_CATEGORIES, "HIT")
    assert statements == []


def test_response_is_exactly_the_documented_json(client: FlaskClient) -> None:
    response = client.get("/categories")

    assert response.mimetype == "application/json"
    assert response.data.strip() == (
        b'[{"id":1,"name":"Electronics"},{"id":2,"name":"Clothing"},{"id":3,"name":"Books"}]'
    )


def test_a_miss_pays_the_database_latency_and_a_hit_does_not(
    make_story_app: Callable[..., Flask],
) -> None:
    client = make_story_app(DB_LATENCY_MS=DB_LATENCY_MS).test_client()
    latency = DB_LATENCY_MS / 1000

    started = time.perf_counter()
    assert get_categories(client)[1] == "MISS"
    miss_seconds = time.perf_counter() - started
    started = time.perf_counter()
    assert get_categories(client)[1] == "HIT"
    hit_seconds = time.perf_counter() - started

    assert miss_seconds >= latency
    assert hit_seconds < latency


def test_the_entry_expires_after_the_ttl(make_story_app: Callable[..., Flask]) -> None:
    ttl = 1
    client = make_story_app(CATEGORIES_CACHE_TTL=ttl).test_client()
    start_early_in_a_second()

    assert get_categories(client) == (SEED_CATEGORIES, "MISS")
    stored_at = time.monotonic()
    assert get_categories(client) == (SEED_CATEGORIES, "HIT")

    # Poll rather than sleep a fixed time: a HIT stores nothing, so polling
    # cannot extend the entry, and the loop ends as soon as it has expired.
    deadline = stored_at + ttl + EXPIRY_GRANULARITY_SECONDS
    while (answer := get_categories(client))[1] == "HIT":
        assert time.monotonic() < deadline, "the entry outlived its TTL"
        time.sleep(POLL_INTERVAL_SECONDS)
    assert answer == (SEED_CATEGORIES, "MISS")
    assert get_categories(client)[1] == "HIT"  # the miss stored it again


def test_invalidate_deletes_the_entry_and_the_next_get_misses_with_the_new_category(
    make_story_app: Callable[..., Flask],
) -> None:
    app = post_toys_to_a_warm_cache(make_story_app(CATEGORIES_CACHE_STRATEGY="invalidate"))
    client = app.test_client()

    assert cached_categories(app) is None
    assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "MISS")
    assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "HIT")


def test_write_through_stores_the_fresh_list_and_the_next_get_hits_with_it(
    make_story_app: Callable[..., Flask],
) -> None:
    app = post_toys_to_a_warm_cache(make_story_app(CATEGORIES_CACHE_STRATEGY="write-through"))
    client = app.test_client()

    assert cached_categories(app) == [*SEED_CATEGORIES, TOYS]
    with recorded_sql(app) as statements:
        assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "HIT")
    assert statements == []


def test_post_answers_201_with_location_of_the_trimmed_category(client: FlaskClient) -> None:
    response = client.post("/categories", json={"name": "  Board Games \t"})

    assert response.status_code == 201
    created = response.get_json()
    assert created == {"id": 4, "name": "Board Games"}
    assert response.headers["Location"] == "/categories/4"
    assert client.get(response.headers["Location"]).get_json() == created


def test_a_name_of_the_maximum_length_is_accepted(app: Flask) -> None:
    longest_name = "x" * NAME_MAX_LENGTH

    created = post_category(app.test_client(), longest_name)

    assert created["name"] == longest_name
    assert categories_in_db(app)[-1] == created


@pytest.mark.parametrize("strategy", ["invalidate", "write-through"])
def test_a_failing_cache_backend_never_fails_the_api(
    make_app: Callable[..., Flask], strategy: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app(
        CACHE_TYPE="tests.support.caches.RaisingCache", CATEGORIES_CACHE_STRATEGY=strategy
    ).test_client()

    with caplog.at_level(logging.WARNING, logger="cache_backends.loader"):
        assert get_categories(client) == (SEED_CATEGORIES, "MISS")
        assert post_category(client, "Toys") == TOYS
        assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "MISS")

    assert any("cache get" in record.getMessage() for record in caplog.records)


def test_ttl_jitter_stays_within_ten_percent_below_the_setting(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(init_db=False, CATEGORIES_CACHE_TTL=300)

    with app.app_context():
        ttls = {categories_region().loader.ttl() for _ in range(200)}

    assert min(ttls) >= 270
    assert max(ttls) <= 300
    assert len(ttls) > 1, "no jitter: entries written together would expire together"


def test_a_refused_write_through_falls_back_to_invalidation(
    make_app: Callable[..., Flask],
) -> None:
    """Otherwise every instance would serve the list without Toys until the TTL."""
    app = make_app(
        CACHE_TYPE="tests.integration.test_categories.SizeLimitedCache",
        CATEGORIES_CACHE_STRATEGY="write-through",
    )
    post_toys_to_a_warm_cache(app)

    assert cached_categories(app) is None
    assert get_categories(app.test_client()) == ([*SEED_CATEGORIES, TOYS], "MISS")
