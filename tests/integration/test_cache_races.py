"""Readers and writers racing through the app, with the interleaving forced.

Each test pauses one database list load right after its snapshot was read
(where DB_LATENCY_MS would wait), lets other requests run, then resumes it.
Without version-fenced stores each of these leaves an older list in the cache;
the assertions fail every time without the fix, on both backends.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from flask import Flask

from cache_backends.versioned import store_entry, timeout_for
from ecommerce.categories import repository
from ecommerce.categories.cache_policy import CACHE_NAME, CATEGORIES_CACHE_KEY, categories_region
from ecommerce.metrics import CACHE_LOADER_EVENTS, CACHE_REQUESTS
from tests.support.app import (
    ON_BOTH_DATABASES,
    SEED_CATEGORIES,
    TOYS,
    cached_categories,
    cached_entry,
    get_categories,
    post_category,
    recorded_sql,
)
from tests.support.races import PAUSE_TIMEOUT_SECONDS, PausedLoad

# The version fence's claims, on the database production uses too.
pytestmark = ON_BOTH_DATABASES

GAMES = {"id": 5, "name": "Games"}
POLL_INTERVAL_SECONDS = 0.02

STRATEGIES = ["invalidate", "write-through", "refresh-async"]


def list_loads(statements: list[str]) -> int:
    """How many of ``statements`` (``recorded_sql``) load the list: this app's loads only.

    Not the process-wide ``ecommerce_db_loads_total``: a load of another test's app
    that is still finishing would count there too.
    """
    return sum("LEFT OUTER JOIN categories" in statement for statement in statements)


def stale_answers() -> float:
    return CACHE_REQUESTS.labels(CACHE_NAME, "stale")._value.get()


def leases_acquired() -> float:
    return CACHE_LOADER_EVENTS.labels(CACHE_NAME, "lease_acquired")._value.get()


def settle(app: Flask) -> None:
    """Wait until no load holds the lease: init-db's own refresh (refresh-async) is done."""
    with app.app_context():
        loader = categories_region().loader
    for _ in range(int(PAUSE_TIMEOUT_SECONDS / POLL_INTERVAL_SECONDS)):
        if loader.cache.get(loader.lease_key) is None:
            return
        threading.Event().wait(POLL_INTERVAL_SECONDS)
    raise AssertionError("the lease was never released")


def settled_app(
    make_story_app: Callable[..., Flask], paused_load: PausedLoad, **config: Any
) -> Flask:
    """A seeded app whose start-up loads are over, with the pause armed from now on."""
    app = make_story_app(**config)
    settle(app)
    paused_load.arm()
    return app


def age_past_its_ttl(app: Flask) -> None:
    """Make the cached list what its TTL makes of it: past fresh, inside the stale window.

    Not by sleeping through a short TTL: on a busy machine the refreshed list could
    then go stale again before the test looks, and be refreshed twice.
    """
    with app.app_context():
        cached, backend = cached_entry(), categories_region().loader.cache
    assert cached is not None and cached.has_value
    now = time.time()
    aged = dataclasses.replace(cached, fresh_until=now - 1)
    assert store_entry(
        backend, CATEGORIES_CACHE_KEY, aged, timeout_for(aged, now), replacing=cached
    )


def drop_cached_list(app: Flask) -> None:
    """Start cold: init-db may have written the seed list through."""
    with app.app_context():
        categories_region().loader.cache.delete(CATEGORIES_CACHE_KEY)


def wait_for_hit(app: Flask) -> tuple[list[dict[str, Any]], str]:
    """GET until the answer is a HIT (a background refresh has landed)."""
    client = app.test_client()
    for _ in range(int(PAUSE_TIMEOUT_SECONDS / POLL_INTERVAL_SECONDS)):
        answer = get_categories(client)
        if answer[1] == "HIT":
            return answer
        threading.Event().wait(POLL_INTERVAL_SECONDS)
    raise AssertionError("no HIT within the deadline")


def wait_until_cached(app: Flask, categories: list[dict[str, Any]]) -> None:
    """Until the cache holds ``categories`` fresh (a background refresh stored them), read
    without a GET: a GET answered STALE just before the store may try for the lease just
    after its release, and win it (double-checked: no load, but a lease counted)."""
    for _ in range(int(PAUSE_TIMEOUT_SECONDS / POLL_INTERVAL_SECONDS)):
        if cached_categories(app) == categories:
            return
        threading.Event().wait(POLL_INTERVAL_SECONDS)
    raise AssertionError("not cached within the deadline")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_slow_reader_never_leaves_its_older_list_after_a_write(
    make_story_app: Callable[..., Flask],
    paused_load: PausedLoad,
    in_background: Callable[..., Future[Any]],
    strategy: str,
) -> None:
    """Reader loads (seed list), writer commits Toys and updates the cache, reader stores."""
    app = settled_app(make_story_app, paused_load, CATEGORIES_CACHE_STRATEGY=strategy)
    drop_cached_list(app)
    reader = in_background(get_categories, app.test_client())
    paused_load.wait_until_paused()

    assert post_category(app.test_client(), "Toys") == TOYS
    paused_load.resume.set()

    # The reader answers with its snapshot, as any slow query would...
    assert reader.result(PAUSE_TIMEOUT_SECONDS) == (SEED_CATEGORIES, "MISS")
    # ...but its older list never becomes what the cache serves.
    client = app.test_client()
    assert get_categories(client)[0] == [*SEED_CATEGORIES, TOYS]
    assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "HIT")


def test_two_write_throughs_landing_in_the_wrong_order_keep_the_newer_list(
    make_story_app: Callable[..., Flask],
    paused_load: PausedLoad,
    in_background: Callable[..., Future[Any]],
) -> None:
    """Toys commits first but its read-back lands after the one of Games, which commits later."""
    app = settled_app(make_story_app, paused_load, CATEGORIES_CACHE_STRATEGY="write-through")
    first_writer = in_background(post_category, app.test_client(), "Toys")
    paused_load.wait_until_paused()  # Toys committed; its read-back (without Games) waits

    assert post_category(app.test_client(), "Games") == GAMES
    paused_load.resume.set()
    assert first_writer.result(PAUSE_TIMEOUT_SECONDS) == TOYS

    assert get_categories(app.test_client()) == ([*SEED_CATEGORIES, TOYS, GAMES], "HIT")


def test_refresh_async_answers_the_write_before_the_reload_and_serves_stale_meanwhile(
    make_story_app: Callable[..., Flask], paused_load: PausedLoad
) -> None:
    """The POST returns while its refresh is paused mid-load; readers get the old list at once."""
    app = settled_app(make_story_app, paused_load, CATEGORIES_CACHE_STRATEGY="refresh-async")
    client = app.test_client()
    assert get_categories(client)[0] == SEED_CATEGORIES  # cached
    stale_before, leases_before = stale_answers(), leases_acquired()

    with recorded_sql(app) as statements:
        assert post_category(client, "Toys") == TOYS  # returned although...
        paused_load.wait_until_paused()  # ...its background reload is still loading
        assert get_categories(client) == (SEED_CATEGORIES, "STALE")
        assert get_categories(client) == (SEED_CATEGORIES, "STALE")
        assert stale_answers() == stale_before + 2  # X-Cache: STALE is counted in /metrics
        paused_load.resume.set()

        wait_until_cached(app, [*SEED_CATEGORIES, TOYS])
        assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "HIT")
    assert list_loads(statements) == 1  # the refresh's, and nothing else
    assert leases_acquired() == leases_before + 1


def test_a_refresh_lost_with_its_process_is_taken_over_by_the_next_reader(
    make_story_app: Callable[..., Flask],
) -> None:
    """The stale mark outlives the refresh: the next reader answers STALE and refreshes."""
    app = make_story_app(CATEGORIES_CACHE_STRATEGY="refresh-async")
    settle(app)
    client = app.test_client()
    assert get_categories(client)[0] == SEED_CATEGORIES
    with app.app_context():
        _, version = repository.create_category("Toys")
        categories_region().loader.mark_stale(
            version
        )  # and then the process died: no refresh was queued

    assert get_categories(client) == (SEED_CATEGORIES, "STALE")
    assert wait_for_hit(app) == ([*SEED_CATEGORIES, TOYS], "HIT")


def test_stale_while_revalidate_serves_the_old_list_after_the_ttl_and_refreshes_once(
    make_story_app: Callable[..., Flask], paused_load: PausedLoad
) -> None:
    app = settled_app(make_story_app, paused_load, CATEGORIES_CACHE_STALE_WHILE_REVALIDATE=30)
    client = app.test_client()
    drop_cached_list(app)
    assert get_categories(client) == (SEED_CATEGORIES, "MISS")  # the test's own thread
    with app.app_context():
        repository.create_category("Toys")  # behind the cache's back: only the TTL tells
    age_past_its_ttl(app)

    with recorded_sql(app) as statements:
        assert get_categories(client) == (SEED_CATEGORIES, "STALE")
        paused_load.wait_until_paused()  # the one background refresh
        assert get_categories(client) == (SEED_CATEGORIES, "STALE")
        paused_load.resume.set()

        assert wait_for_hit(app) == ([*SEED_CATEGORIES, TOYS], "HIT")
    assert list_loads(statements) == 1
