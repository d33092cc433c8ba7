"""DynamoDB misbehaving while the app serves: hung (SIGSTOP), and back without its table.

A slow or absent cache must never cost a request more than skipping it would,
and hits must come back on their own once DynamoDB does.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from flask import Flask

from cache_backends import signals
from cache_backends.dynamodb import DEFAULT_GET_TIMEOUT
from cache_backends.dynamodb.settings import DEFAULT_BREAKER_FAILURES, DEFAULT_WRITE_TIMEOUT
from devtools.dynamodb_local import DynamoDBLocal
from devtools.dynamodb_proxy import DynamoDBProxy
from ecommerce.categories import repository
from ecommerce.categories.cache_policy import CATEGORIES_CACHE_KEY, categories_region
from ecommerce.extensions import cache
from ecommerce.metrics import DB_LOADS, DYNAMODB_THROTTLES
from tests.support.app import SEED_CATEGORIES, TOYS, get_categories, post_category
from tests.support.dynamodb import count_attempts

#: The simulated database: what an answer without any cache costs.
DB_LATENCY_MS = 50
READERS = 4
HUNG_SECONDS = 3.0
#: What a hung cache may add to a database-only answer: one get_timeout (0.1 s) and
#: the scheduling of four reader threads on two cores.
HUNG_EXTRA_BUDGET_SECONDS = 0.3
BREAKER_COOLDOWN_SECONDS = 2
RESUME_DEADLINE_SECONDS = 20.0
RECREATE_DEADLINE_SECONDS = 25.0
POLL_SECONDS = 0.1
THROTTLED_GETS = DYNAMODB_THROTTLES.labels("GetItem")

pytestmark = pytest.mark.slow


@pytest.fixture
def app(make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]) -> Flask:
    return make_app(
        **{
            **dynamodb_cache_config,
            "CACHE_DYNAMODB_GET_TIMEOUT": DEFAULT_GET_TIMEOUT,
            "CACHE_DYNAMODB_WRITE_TIMEOUT": DEFAULT_WRITE_TIMEOUT,
        },
        DB_LATENCY_MS=DB_LATENCY_MS,
        CACHE_DYNAMODB_BREAKER_COOLDOWN=BREAKER_COOLDOWN_SECONDS,
    )


@contextmanager
def stopped(dynamodb_local: DynamoDBLocal) -> Iterator[None]:
    """DynamoDB Local frozen: it accepts connections and never answers."""
    assert dynamodb_local.process is not None
    os.kill(dynamodb_local.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(dynamodb_local.process.pid, signal.SIGCONT)


def database_only_seconds(app: Flask) -> float:
    """The slowest of a few list loads straight from the database."""
    timings = []
    with app.app_context():
        for _ in range(5):
            started = time.perf_counter()
            repository.list_categories_at_version()
            timings.append(time.perf_counter() - started)
    return max(timings)


def read_concurrently(app: Flask, seconds: float) -> list[tuple[list[Any], str, float]]:
    """READERS threads GET /categories for ``seconds``: (body, X-Cache, duration) each."""
    answers: list[tuple[list[Any], str, float]] = []
    deadline = time.monotonic() + seconds

    def reader() -> None:
        client = app.test_client()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            body, cache_result = get_categories(client)
            answers.append((body, cache_result, time.perf_counter() - started))

    threads = [threading.Thread(target=reader) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def seconds_until_a_hit(app: Flask, deadline: float) -> float:
    client = app.test_client()
    started = time.monotonic()
    while get_categories(client)[1] != "HIT":
        assert time.monotonic() - started < deadline, "hits never came back"
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started


def test_a_hung_dynamodb_costs_a_get_no_more_than_a_database_answer_plus_a_short_timeout(
    app: Flask, dynamodb_local: DynamoDBLocal
) -> None:
    client = app.test_client()
    assert get_categories(client) == (SEED_CATEGORIES, "MISS")
    assert get_categories(client) == (SEED_CATEGORIES, "HIT")
    database_only = database_only_seconds(app)
    attempts = count_attempts(app.extensions["cache"][cache], "GetItem")
    loads_before = DB_LOADS._value.get()

    with stopped(dynamodb_local):
        answers = read_concurrently(app, HUNG_SECONDS)

    assert answers, "no request finished while DynamoDB hung"
    assert all(body == SEED_CATEGORIES for body, _, _ in answers), "every answer is correct"
    # The copy the process holds answers (stale-if-error): the hang costs the database nothing.
    assert DB_LOADS._value.get() == loads_before
    assert {result for _, result, _ in answers} <= {"HIT", "STALE"}
    # On the wire: one try per get (no retries), and the open circuit keeps the rest off
    # DynamoDB: the calls that opened it, the ones in flight then, one probe batch per cooldown.
    probes = math.ceil(HUNG_SECONDS / BREAKER_COOLDOWN_SECONDS)
    assert len(attempts) <= DEFAULT_BREAKER_FAILURES + READERS * (1 + probes), (
        len(attempts),
        len(answers),
    )
    durations = sorted(duration for _, _, duration in answers)
    p99 = durations[int(len(durations) * 0.99) - 1]
    assert p99 <= database_only + HUNG_EXTRA_BUDGET_SECONDS, (p99, database_only)
    assert seconds_until_a_hit(app, RESUME_DEADLINE_SECONDS) < RESUME_DEADLINE_SECONDS


@pytest.mark.parametrize(
    "hangs_after", ["GetItem", "PutItem"], ids=["before-the-lease", "holding-the-lease"]
)
def test_a_miss_in_flight_when_dynamodb_hangs_costs_it_one_short_timeout(
    app: Flask, dynamodb_local: DynamoDBLocal, hangs_after: str
) -> None:
    """A MISS takes the lease, stores and releases on the reader's own thread, all within
    the request path's budget (tried once, within the write timeout), never the patient
    one (1 s, retried); and once one call timed out, the read's other calls are skipped:
    the database answers. DynamoDB is stopped the moment the reader's first
    ``hangs_after`` returns: its read, or its lease's conditional put."""
    assert dynamodb_local.process is not None
    pid = dynamodb_local.process.pid
    database_only = database_only_seconds(app)
    hung = threading.Event()
    attempts = count_attempts(app.extensions["cache"][cache])

    def hang_after(transport: object, *, operation: str, outcome: str, **_: Any) -> None:
        if operation == hangs_after and outcome == "ok" and not hung.is_set():
            hung.set()
            attempts.clear()
            os.kill(pid, signal.SIGSTOP)

    try:
        with signals.dynamodb_call.connected_to(hang_after):
            started = time.perf_counter()
            answer = get_categories(app.test_client())
            elapsed = time.perf_counter() - started
    finally:
        if hung.is_set():
            os.kill(pid, signal.SIGCONT)

    assert hung.is_set(), f"the reader never called {hangs_after}"
    assert answer == (SEED_CATEGORIES, "MISS")
    assert len(attempts) == 1, f"after the hang the read still sent {attempts}"
    budget = (
        max(DEFAULT_GET_TIMEOUT, DEFAULT_WRITE_TIMEOUT) + database_only + HUNG_EXTRA_BUDGET_SECONDS
    )
    assert elapsed <= budget, (elapsed, budget)
    # After the fault: the lease a resumed DynamoDB may still apply ends, and hits return.
    assert seconds_until_a_hit(app, RESUME_DEADLINE_SECONDS) < RESUME_DEADLINE_SECONDS


def test_a_throttled_list_is_answered_from_the_held_copy_and_leaves_the_circuit_closed(
    make_app: Callable[..., Flask],
    dynamodb_cache_config: dict[str, Any],
    dynamodb_local: DynamoDBLocal,
) -> None:
    """DynamoDB refuses every read of the list for capacity (a hot key), as a proxy of our
    own answers: each GET is the list this process holds (no database load), the throttles
    are counted apart from errors, and the circuit stays closed, so a write's cache update
    still lands at once; the writer's next GET shows its write (loaded once)."""
    with DynamoDBProxy(dynamodb_local.endpoint_url) as proxy:
        app = make_app(
            **{**dynamodb_cache_config, "CACHE_DYNAMODB_ENDPOINT_URL": proxy.endpoint_url}
        )
        client = app.test_client()
        assert get_categories(client) == (SEED_CATEGORIES, "MISS")
        assert get_categories(client) == (SEED_CATEGORIES, "HIT")
        list_key = app.config["CACHE_KEY_PREFIX"] + CATEGORIES_CACHE_KEY
        loads, throttles = DB_LOADS._value.get(), THROTTLED_GETS._value.get()
        reads = 2 * DEFAULT_BREAKER_FAILURES  # enough to open a circuit that counted them

        with proxy.throttling("GetItem", key=list_key):
            assert [get_categories(client) for _ in range(reads)] == [
                (SEED_CATEGORIES, "STALE")
            ] * reads
            assert DB_LOADS._value.get() == loads, "the throttled table fell on the database"
            assert post_category(client, "Toys") == TOYS
            assert categories_region(app).owed.pending() == {}, "the circuit opened: owed"
            assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "MISS")
            assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "STALE")

        assert THROTTLED_GETS._value.get() - throttles == reads + 2
        assert DB_LOADS._value.get() == loads + 1
        assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "MISS")  # the tombstone
        assert sum(call.throttled for call in proxy.calls()) == reads + 2


def test_dynamodb_back_without_its_table_gets_it_created_again_and_hits_resume(
    app: Flask, dynamodb_local: DynamoDBLocal, table_name: str
) -> None:
    """As after a restart of an in-memory DynamoDB Local, with CACHE_DYNAMODB_CREATE_TABLE."""
    client = app.test_client()
    assert get_categories(client) == (SEED_CATEGORIES, "MISS")
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url)
    dynamodb.delete_table(TableName=table_name)

    assert get_categories(client)[0] == SEED_CATEGORIES  # the database answers meanwhile

    assert seconds_until_a_hit(app, RECREATE_DEADLINE_SECONDS) < RECREATE_DEADLINE_SECONDS
    assert dynamodb.describe_table(TableName=table_name)["Table"]["TableStatus"] == "ACTIVE"
