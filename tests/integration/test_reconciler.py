"""The reconciler: a cache left behind (or ahead of) the database converges, whatever failed.

Changes are made the way the API cannot see them: the repository's write alone, as
a back-office tool or plain SQL would (the database's trigger raises the version; no
cache update follows). Races are forced: a load paused right after its snapshot, a
reconcile paused between its cache read and its database read, a reconcile holding
the repair lease; costs are counted on botocore's wire and SQLAlchemy's engine events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from flask import Flask

from cache_backends.reconciler import ReconcileOutcome, Reconciler
from ecommerce.categories import repository
from ecommerce.categories.cache_policy import categories_region
from ecommerce.config import ConfigError
from ecommerce.extensions import cache
from ecommerce.metrics import CACHE_RECONCILES
from tests.support.app import (
    SEED_CATEGORIES,
    TOYS,
    cached_categories,
    cached_entry,
    get_categories,
    recorded_sql,
)
from tests.support.caches import record_dynamodb_calls
from tests.support.races import PAUSE_TIMEOUT_SECONDS, PausedLoad

WITH_TOYS = [*SEED_CATEGORIES, TOYS]
#: A thread woken by the test acts in milliseconds; the deadline only stops a hang.
DEADLINE_SECONDS = 5.0
POLL_SECONDS = 0.02
#: The shortest reconcile interval (the repair lease counts whole seconds): the cost test's.
ONE_SECOND = 1


def write_behind_the_caches_back(app: Flask, name: str = TOYS["name"]) -> int:
    """Insert a category with no cache update (a back-office tool); the new version."""
    with app.app_context():
        return repository.create_category(name)[1]


def reconcile(app: Flask, **kwargs: Any) -> ReconcileOutcome:
    return categories_region(app).reconciler.reconcile_once(**kwargs).outcome


def warm(app: Flask) -> None:
    """GET until the seed list is a HIT (init-db left a tombstone, or its write-through)."""
    client = app.test_client()
    wait_until(lambda: get_categories(client) == (SEED_CATEGORIES, "HIT"), "never a HIT")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(POLL_SECONDS)


@pytest.mark.parametrize(
    ("strategy", "next_read"),
    [("invalidate", "MISS"), ("write-through", "HIT"), ("refresh-async", None)],
)
def test_a_cache_left_behind_is_repaired_by_the_strategy(
    make_story_app: Callable[..., Flask], strategy: str, next_read: str | None
) -> None:
    """Without the reconciler the seed list would be a HIT for the rest of the TTL."""
    app = make_story_app(CATEGORIES_CACHE_STRATEGY=strategy)
    warm(app)
    write_behind_the_caches_back(app)
    assert get_categories(app.test_client()) == (SEED_CATEGORIES, "HIT"), "behind"

    assert reconcile(app) == ReconcileOutcome.BEHIND

    if next_read is None:  # refresh-async: a stale mark and one background refresh
        wait_until(lambda: cached_categories(app) is not None, "the refresh never landed")
        next_read = "HIT"
    assert get_categories(app.test_client()) == (WITH_TOYS, next_read)
    assert reconcile(app, fleet_lease=False) in {ReconcileOutcome.IN_SYNC, ReconcileOutcome.FENCED}


def test_a_coherent_cache_is_left_alone(make_story_app: Callable[..., Flask]) -> None:
    app = make_story_app()
    warm(app)

    assert reconcile(app) == ReconcileOutcome.IN_SYNC
    assert get_categories(app.test_client()) == (SEED_CATEGORIES, "HIT")


@pytest.mark.parametrize("cached_before", ["tombstone", "nothing"])
def test_the_reconciler_racing_a_load_never_lets_the_older_list_become_fresh(
    make_story_app: Callable[..., Flask],
    paused_load: PausedLoad,
    in_background: Callable[..., Future[Any]],
    cached_before: str,
) -> None:
    """A GET's load reads version N and pauses; a change commits N+1 behind the cache's
    back; the reconciler fences at N+1; the load, resumed, is refused: its list is never
    served as fresh, and the next GET loads the change.
    """
    app = make_story_app()
    with app.app_context():
        if cached_before == "nothing":
            categories_region().loader.forget()
        seed_version = repository.current_catalogue_version()
    paused_load.arm()
    early = in_background(get_categories, app.test_client())
    paused_load.wait_until_paused()  # its snapshot: the seed list at seed_version

    new_version = write_behind_the_caches_back(app)
    expected = ReconcileOutcome.BEHIND if cached_before == "tombstone" else ReconcileOutcome.ABSENT
    assert reconcile(app) == expected
    paused_load.resume.set()

    assert early.result(PAUSE_TIMEOUT_SECONDS) == (SEED_CATEGORIES, "MISS")
    with app.app_context():
        entry = cached_entry()
    assert entry is not None and entry.fence == new_version > seed_version
    assert cached_categories(app) is None, "the older list was refused"
    assert get_categories(app.test_client()) == (WITH_TOYS, "MISS")
    assert get_categories(app.test_client()) == (WITH_TOYS, "HIT")


def test_a_write_between_the_reconcilers_two_reads_is_never_taken_for_a_restored_database(
    make_story_app: Callable[..., Flask], in_background: Callable[..., Future[Any]]
) -> None:
    """The reconciler reads the cache, then the database. A write that commits (and
    fences the cache) in between makes the database look newer, never the cache look
    ahead of it: its tombstone is not forgotten.
    """
    app = make_story_app()
    warm(app)
    the_reconciler = categories_region(app).reconciler
    between, resume = pause_database_reads(the_reconciler)
    running = in_background(the_reconciler.reconcile_once)
    assert between.wait(PAUSE_TIMEOUT_SECONDS)  # it has read the cache: the seed list
    response = app.test_client().post("/categories", json={"name": TOYS["name"]})
    assert response.status_code == 201
    resume.set()

    reconciliation = running.result(PAUSE_TIMEOUT_SECONDS)
    assert reconciliation.outcome == ReconcileOutcome.BEHIND  # not AHEAD
    assert get_categories(app.test_client()) == (WITH_TOYS, "MISS")


def test_a_database_restored_to_an_older_version_is_forgotten_and_reloaded(
    make_story_app: Callable[..., Flask],
) -> None:
    """The cache holds a list from a version the database no longer has (a restored
    backup): every load would be fenced off by it. Before, this needed ``cache clear``.
    """
    app = make_story_app()
    ghost = [{"id": 99, "name": "Ghost"}]
    with app.app_context():
        restored_version = repository.current_catalogue_version()
        assert categories_region().loader.store(ghost, restored_version + 5, strict=True)
    assert get_categories(app.test_client()) == (ghost, "HIT"), "the problem"

    assert reconcile(app) == ReconcileOutcome.AHEAD

    assert get_categories(app.test_client()) == (SEED_CATEGORIES, "MISS")
    assert get_categories(app.test_client()) == (SEED_CATEGORIES, "HIT")


def pause_database_reads(reconciler: Reconciler) -> tuple[threading.Event, threading.Event]:
    """Make ``reconciler``'s database reads wait for the test: (paused, resume).

    ``paused`` is set when a reconcile reaches its database read, having read the
    cache; the read goes on once the test sets ``resume``. The moment a race with a
    write, or with another reconciler, needs.
    """
    paused, resume = threading.Event(), threading.Event()
    read_database_version = reconciler.database_version

    def paused_database_version() -> int:
        paused.set()
        assert resume.wait(PAUSE_TIMEOUT_SECONDS)
        return read_database_version()

    reconciler.database_version = paused_database_version
    return paused, resume


def two_processes(make_app: Callable[..., Flask], config: dict[str, Any]) -> tuple[Flask, Flask]:
    """Two apps on one database and one DynamoDB table: two workers of a fleet."""
    first = make_app(**config)
    return first, make_app(init_db=False, **config)


def pause_repairs(reconciler: Reconciler) -> tuple[threading.Event, threading.Event, list[int]]:
    """Make ``reconciler``'s repairs wait for the test: (paused, resume, versions repaired).

    ``paused`` is set when a reconcile has won the repair lease and starts repairing.
    """
    paused, resume, repaired = threading.Event(), threading.Event(), []
    repair = reconciler.repair

    def paused_repair(version: int) -> bool:
        repaired.append(version)
        paused.set()
        assert resume.wait(PAUSE_TIMEOUT_SECONDS)
        return repair(version)

    reconciler.repair = paused_repair
    return paused, resume, repaired


def test_of_two_processes_finding_the_same_lag_one_repairs(
    make_app: Callable[..., Flask],
    dynamodb_cache_config: dict[str, Any],
    in_background: Callable[..., Future[Any]],
) -> None:
    """The first wins the repair lease and is paused in its repair; the second reads the
    same lag and stops at the lease: one repair, one load. Then the first repairs.
    """
    first, second = two_processes(make_app, dynamodb_cache_config)
    warm(first)
    write_behind_the_caches_back(first)
    holding, release, first_repairs = pause_repairs(categories_region(first).reconciler)
    _, _, second_repairs = pause_repairs(categories_region(second).reconciler)

    running = in_background(categories_region(first).reconciler.reconcile_once)
    assert holding.wait(PAUSE_TIMEOUT_SECONDS)
    assert reconcile(second) == ReconcileOutcome.LEASE_HELD
    release.set()

    assert running.result(PAUSE_TIMEOUT_SECONDS).outcome == ReconcileOutcome.BEHIND
    assert (len(first_repairs), second_repairs) == (1, [])
    assert get_categories(second.test_client()) == (WITH_TOYS, "MISS")


def test_an_instance_in_sync_costs_one_query_and_one_small_read_per_interval_and_no_write(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]
) -> None:
    """Two processes of one instance run their reconciler threads: one is elected and
    sends, per interval, one SQL statement and one GetItem (the pointer); the other sends
    nothing; nobody writes. When the elected one stops, the other takes its place.
    """
    config = {**dynamodb_cache_config, "CATEGORIES_CACHE_RECONCILE_SECONDS": ONE_SECOND}
    fleet = two_processes(make_app, config)
    warm(fleet[0])
    reconcilers = [categories_region(app).reconciler for app in fleet]
    calls = [record_dynamodb_calls(app.extensions["cache"][cache]) for app in fleet]
    rounds = 3
    with recorded_sql(fleet[0]) as first_sql, recorded_sql(fleet[1]) as second_sql:
        statements = (first_sql, second_sql)
        for reconciler in reconcilers:
            assert reconciler.start()
        wait_until(lambda: max(len(sent) for sent in calls) >= rounds, "no reconcile rounds")
        elected = 0 if calls[0] else 1
        other = 1 - elected
        assert (calls[other], statements[other]) == ([], []), "only one process reconciles"
        assert set(calls[elected]) == {"GetItem"}, "no write while in sync"
        assert abs(len(statements[elected]) - len(calls[elected])) <= 1  # one of each a round

        assert reconcilers[elected].stop()
        wait_until(lambda: len(calls[other]) > 0, "the other process never took its place")
        assert reconcilers[other].stop()
    assert set(calls[other]) == {"GetItem"}
    print(
        f"\nper round, one instance of two processes in sync: 1 SQL, 1 GetItem (the pointer), "
        f"no write; {len(calls[elected])} rounds, then the other took over"
    )


# --- the thread -----------------------------------------------------------------------


def reconciles_counted() -> float:
    return sum(
        CACHE_RECONCILES.labels("categories", outcome.value)._value.get()
        for outcome in ReconcileOutcome
    )


def test_the_thread_starts_with_the_first_request_and_stops_at_drain(
    make_app: Callable[..., Flask],
) -> None:
    """Not under TESTING, as a server runs: no thread for init-db (a CLI command) nor
    before the first request; then one, woken at once by wake(); gone after the drain.
    """
    from ecommerce.categories.cache_policy import stop_categories_cache

    hour = 3600  # the interval never elapses here: only wake() makes it reconcile
    app = make_app(TESTING=False, CATEGORIES_CACHE_RECONCILE_SECONDS=hour)
    the_reconciler = categories_region(app).reconciler
    assert not the_reconciler.running, "init-db ran; no request yet"
    warm(app)
    assert the_reconciler.running
    write_behind_the_caches_back(app)
    before = reconciles_counted()

    the_reconciler.wake()

    wait_until(lambda: reconciles_counted() > before, "wake() did not reconcile")
    assert get_categories(app.test_client()) == (WITH_TOYS, "MISS")
    assert stop_categories_cache(app)
    assert not the_reconciler.running


def test_no_thread_when_the_interval_is_zero(make_app: Callable[..., Flask]) -> None:
    app = make_app(TESTING=False, CATEGORIES_CACHE_RECONCILE_SECONDS=0)
    warm(app)

    assert not categories_region(app).reconciler.running
    assert reconcile(app) == ReconcileOutcome.IN_SYNC  # still callable by hand


@pytest.mark.parametrize("bad", [-1, "2", True])
def test_a_bad_reconcile_interval_stops_start_up_naming_it(
    make_app: Callable[..., Flask], bad: Any
) -> None:
    with pytest.raises(ConfigError, match="CATEGORIES_CACHE_RECONCILE_SECONDS"):
        make_app(init_db=False, CATEGORIES_CACHE_RECONCILE_SECONDS=bad)


def test_a_failing_cache_is_a_failed_reconcile_not_an_empty_one(
    make_app: Callable[..., Flask],
) -> None:
    """An outage must not read as "nothing cached" (which would tombstone): it is retried."""
    app = make_app(CACHE_TYPE="tests.support.caches.RaisingCache")

    reconciliation = categories_region(app).reconciler.reconcile_once()

    assert reconciliation.outcome == ReconcileOutcome.FAILED
    assert reconciliation.lag is None
