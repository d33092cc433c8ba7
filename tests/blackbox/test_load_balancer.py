"""A real load balancer: nginx round-robin in front of two gunicorn instances.

The set-up is devtools/fleet.py's, the one ``make cluster`` runs: each instance
is ``gunicorn wsgi:app`` with the repository's gunicorn.conf.py, two workers,
its own Prometheus directory; both share one SQLite file, one DynamoDB Local
table and one signing key. nginx's ``X-Upstream`` header names the instance
that answered each request.

What it shows: with the DynamoDB backend every read after a write returns the
new category whichever instance answers (both strategies); with SimpleCache
the instance that did not take the POST keeps serving its stale copy, which is
why DynamoDB exists; and /metrics counts every worker of an instance.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask

from devtools.credentials import DEV_ADMIN_AUTHORIZATION
from devtools.fleet import (
    UPSTREAM_HEADER,
    Cluster,
    Instance,
    cluster,
    find_nginx,
    gunicorn_instance,
    wait_until_healthy,
)
from devtools.pinned_workers import PinnedWorkers
from devtools.processes import worker_pids
from tests.support.app import SEED_CATEGORIES, TOYS
from tests.support.logs import json_log_lines, metric_value
from tests.support.servers import on_the_created_table, post_category_over_http

pytestmark = pytest.mark.slow

HTTP_TIMEOUT_SECONDS = 10.0
#: Round-robin over two instances: four reads reach each instance twice.
READS_PER_CHECK = 4
#: A replaced gunicorn worker imports the app again: seconds on a busy 2-core machine.
WORKER_REPLACEMENT_TIMEOUT_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.1
CATEGORIES_REQUESTS = "ecommerce_http_requests_total"
CATEGORIES_GET = {"method": "GET", "route": "/categories", "status": "200"}
#: Linux routes all of 127.0.0.0/8 to loopback; nginx itself connects from 127.0.0.1.
CLIENT_LOOPBACK_ADDRESS = "127.0.0.2"


@dataclass(frozen=True)
class Answer:
    categories: list[dict[str, Any]]
    cache: str
    upstream: str  # "127.0.0.1:<port>" of the instance that answered; "" when direct


@pytest.fixture(scope="module")
def nginx() -> str:
    """The nginx binary; a missing one skips locally but fails under CI."""
    found = find_nginx()
    if found is None:
        reason = "nginx is not installed: `make test` installs it (target system-deps)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}; under CI the load-balancer tests must run")
        pytest.skip(reason)
    return found


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """Straight to 127.0.0.1 (no proxy from the environment), one connection per request:
    a kept-alive connection would make each gunicorn worker linger on its way out."""
    with requests.Session() as session:
        session.trust_env = False
        session.headers["Connection"] = "close"
        yield session


def get_categories(http: requests.Session, url: str, **headers: str) -> Answer:
    response = http.get(f"{url}/categories", headers=headers, timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    return Answer(
        response.json(), response.headers["X-Cache"], response.headers.get(UPSTREAM_HEADER, "")
    )


def post_category(http: requests.Session, url: str, name: str) -> tuple[dict[str, Any], str]:
    """Create ``name``; return the category and the instance that took the POST."""
    response = post_category_over_http(url, name, HTTP_TIMEOUT_SECONDS, http)
    return response.json(), response.headers[UPSTREAM_HEADER]


def scrape(http: requests.Session, instance: Instance, name: str, **labels: str) -> float:
    """One instance's /metrics, hit directly (nginx would pick the instance for us)."""
    response = http.get(f"{instance.url}/metrics", timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 200
    return metric_value(response.text, name, **labels)


def addresses(running: Cluster) -> set[str]:
    return {instance.address for instance in running.instances}


def get_from(source_address: str, url: str, headers: dict[str, str]) -> HTTPResponse:
    """GET ``url`` over a connection from ``source_address`` (requests cannot choose it)."""
    parts = urlsplit(url)
    connection = HTTPConnection(
        parts.hostname, parts.port, timeout=HTTP_TIMEOUT_SECONDS, source_address=(source_address, 0)
    )
    try:
        connection.request("GET", parts.path, headers=headers)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    return response


def app_log_lines(instance: Instance) -> list[dict[str, Any]]:
    """The app's JSON lines from an instance's log, without gunicorn's plain-text ones."""
    text = instance.log_path.read_text()
    return json_log_lines("\n".join(line for line in text.splitlines() if line.startswith("{")))


@pytest.fixture
def fleet_settings(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any], database_uri: str
) -> dict[str, Any]:
    """What every instance shares: database, table, signing key. Both exist already,
    created once here, as deploy/cloudformation.yaml creates the table before any instance."""
    make_app(**dynamodb_cache_config)
    return on_the_created_table(dynamodb_cache_config, database_uri)


@pytest.mark.parametrize("strategy", ["invalidate", "write-through"])
def test_through_the_load_balancer_every_read_after_a_write_has_it(
    nginx: str,
    http: requests.Session,
    fleet_settings: dict[str, Any],
    tmp_path: Path,
    strategy: str,
) -> None:
    settings = {**fleet_settings, "CATEGORIES_CACHE_STRATEGY": strategy}

    with cluster(nginx, settings, tmp_path) as running:
        reads = [get_categories(http, running.url) for _ in range(READS_PER_CHECK)]
        assert all(read.categories == SEED_CATEGORIES for read in reads)
        assert {read.upstream for read in reads} == addresses(running)

        expected = SEED_CATEGORIES
        posted_through = set()
        for name in ("Toys", "Games"):  # round-robin: each instance takes one POST
            created, upstream = post_category(http, running.url, name)
            posted_through.add(upstream)
            expected = [*expected, created]
            reads = [get_categories(http, running.url) for _ in range(READS_PER_CHECK)]
            assert [read.categories for read in reads] == [expected] * READS_PER_CHECK
            assert {read.upstream for read in reads} == addresses(running)
        assert posted_through == addresses(running)

        get_count = READS_PER_CHECK * 3
        served = [scrape(http, i, CATEGORIES_REQUESTS, **CATEGORIES_GET) for i in running.instances]
        assert all(count > 0 for count in served), served
        assert sum(served) == get_count
        cache_reads = [
            scrape(http, instance, "ecommerce_cache_requests_total", cache="categories", result=r)
            for instance in running.instances
            for r in ("hit", "miss", "error")
        ]
        assert sum(cache_reads) == get_count

        # The client connects from another loopback address than nginx does. nginx
        # appends the peer it saw to X-Forwarded-For, and the app, trusting one hop,
        # logs that peer: neither nginx's own address nor the one the client forged.
        # The request id travels through nginx to the app's log line and back.
        headers = {"X-Forwarded-For": "203.0.113.66", "X-Request-ID": "through-nginx-1"}
        response = get_from(CLIENT_LOOPBACK_ADDRESS, f"{running.url}/healthz", headers)
        assert response.getheader("X-Request-ID") == "through-nginx-1"
        answered_by = response.getheader(UPSTREAM_HEADER)

    (instance,) = [i for i in running.instances if i.address == answered_by]
    (line,) = [line for line in app_log_lines(instance) if line["request_id"] == "through-nginx-1"]
    assert (line["path"], line["remote_addr"]) == ("/healthz", CLIENT_LOOPBACK_ADDRESS)


def test_with_simplecache_the_other_instance_serves_a_stale_list(
    nginx: str,
    http: requests.Session,
    make_app: Callable[..., Flask],
    database_uri: str,
    tmp_path: Path,
) -> None:
    """Why the DynamoDB backend exists: SimpleCache is a dict inside one process.

    Both instances cache the seed list; a POST through nginx clears only the cache
    of the instance that took it. The other keeps answering its old copy as a HIT
    until the TTL (300 s) runs out.
    """
    make_app()  # seeds the database; the app's default cache is SimpleCache
    settings = {"SQLALCHEMY_DATABASE_URI": database_uri}

    with cluster(nginx, settings, tmp_path, workers=1) as running:
        for instance in running.instances:  # each instance caches its own copy
            assert get_categories(http, instance.url) == Answer(SEED_CATEGORIES, "MISS", "")

        created, posted_to = post_category(http, running.url, "Toys")
        assert created == TOYS
        (other,) = [i for i in running.instances if i.address != posted_to]

        reads = [get_categories(http, running.url) for _ in range(READS_PER_CHECK)]
        fresh = {read.upstream for read in reads if read.categories == [*SEED_CATEGORIES, TOYS]}
        stale = {read.upstream for read in reads if read.categories == SEED_CATEGORIES}
        assert (fresh, stale) == ({posted_to}, {other.address})
        # And without nginx in the way, deterministically:
        assert get_categories(http, other.url) == Answer(SEED_CATEGORIES, "HIT", "")


def replace_every_worker(instance: Instance) -> None:
    """SIGTERM each worker of ``instance`` and wait until gunicorn has started new ones."""
    old = worker_pids(instance.process.pid)
    assert old, "the instance has no workers"
    for pid in old:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + WORKER_REPLACEMENT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        current = worker_pids(instance.process.pid)
        if len(current) == len(old) and not current & old:
            return
        time.sleep(POLL_INTERVAL_SECONDS)
    pytest.fail(f"workers not replaced in time; log:\n{instance.log_path.read_text()}")


def test_metrics_sum_every_worker_even_after_the_workers_are_replaced(
    http: requests.Session, fleet_settings: dict[str, Any], tmp_path: Path
) -> None:
    """Multiprocess mode: each worker writes its own file, and a scrape adds them all up.

    After every worker that served the reads has been replaced, the new workers
    answer the scrape having served none of them: the count can only come from
    the files the old workers left behind.
    """
    reads = 6

    with gunicorn_instance("solo", fleet_settings, tmp_path, workers=2) as instance:
        wait_until_healthy(instance.url, instance.process, instance.log_path)
        for _ in range(reads):
            get_categories(http, instance.url)
        assert scrape(http, instance, CATEGORIES_REQUESTS, **CATEGORIES_GET) == reads
        assert len(worker_pids(instance.process.pid)) == 2

        replace_every_worker(instance)

        assert scrape(http, instance, CATEGORIES_REQUESTS, **CATEGORIES_GET) == reads
        assert scrape(http, instance, "ecommerce_db_loads_total") == 1  # one miss, then hits


# -- the near-cache across a fleet -------------------------------------------------------

#: The issue's bound: CACHE_NEAR_TTL (1 s) plus room for one reload on a busy machine.
NEAR_TTL_SECONDS = 1
NEAR_FRESHNESS_BOUND_SECONDS = 1.6


def list_over(connection: HTTPConnection) -> list[dict[str, Any]]:
    connection.request("GET", "/categories")
    response = connection.getresponse()
    assert response.status == 200
    return json.loads(response.read())


def test_with_the_near_cache_every_worker_of_another_instance_serves_a_write_within_its_ttl(
    fleet_settings: dict[str, Any], tmp_path: Path
) -> None:
    """Two instances x two workers on one table, CACHE_NEAR_TTL=1.

    Each worker keeps the list in memory for up to a second, so another instance's
    worker may serve the old list that long, and no longer; the worker that took
    the POST serves the new list at once. Kept-alive connections pin each client
    to one worker, which /proc names.
    """
    settings = {**fleet_settings, "CACHE_NEAR_TTL": NEAR_TTL_SECONDS}
    with ExitStack() as stack:
        writer_instance, reader_instance = (
            stack.enter_context(gunicorn_instance(name, settings, tmp_path, workers=2))
            for name in ("near-writer", "near-reader")
        )
        for instance in (writer_instance, reader_instance):
            wait_until_healthy(instance.url, instance.process, instance.log_path)
        pinned = PinnedWorkers(reader_instance)
        stack.callback(pinned.close)
        pinned.pin_all()
        readers = pinned.connections
        assert len(readers) == 2
        writer = HTTPConnection("127.0.0.1", writer_instance.port, timeout=HTTP_TIMEOUT_SECONDS)
        stack.callback(writer.close)
        for connection in (writer, *readers.values()):  # every worker holds the seed list near
            assert list_over(connection) == SEED_CATEGORIES

        writer.request(
            "POST",
            "/categories",
            body=json.dumps({"name": "Toys"}),
            headers={"Content-Type": "application/json", **DEV_ADMIN_AUTHORIZATION},
        )
        response = writer.getresponse()
        assert response.status == 201, response.read()
        response.read()
        written_at = time.monotonic()
        assert list_over(writer) == [*SEED_CATEGORIES, TOYS]  # the writer's process: at once

        seen_after = {}
        for pid, connection in readers.items():
            while list_over(connection) != [*SEED_CATEGORIES, TOYS]:
                assert time.monotonic() - written_at < NEAR_FRESHNESS_BOUND_SECONDS * 2, pid
                time.sleep(POLL_INTERVAL_SECONDS / 2)
            seen_after[pid] = time.monotonic() - written_at
        assert max(seen_after.values()) <= NEAR_FRESHNESS_BOUND_SECONDS, seen_after
