"""The app on the DynamoDB backend: what lands in the table, outages, and a fleet of two.

The cache-aside story itself runs on DynamoDB in tests/integration/test_categories.py
(parametrized over both backends); this module covers what only a shared,
remote cache has.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from flask import Flask

from devtools import REPOSITORY_ROOT
from devtools.dynamodb_local import DynamoDBLocal
from devtools.fleet import flask_environment, gunicorn_instance, prepare, wait_until_healthy
from devtools.ports import free_port
from ecommerce.categories.cache_policy import CATEGORIES_CACHE_KEY
from tests.support import app as story
from tests.support.servers import on_the_created_table, post_category_over_http

#: Connection refused is immediate; with one retry and the breaker, an outage
#: must not make three requests wait anywhere near this long.
OUTAGE_BUDGET_SECONDS = 3.0
HTTP_TIMEOUT_SECONDS = 5.0


def test_the_stored_item_expires_ttl_seconds_from_now(
    make_app: Callable[..., Flask],
    dynamodb_cache_config: dict[str, Any],
    dynamodb_local: DynamoDBLocal,
    table_name: str,
) -> None:
    ttl = 4  # under 10 s, so the jitter (10 %, whole seconds) is zero
    app = make_app(**dynamodb_cache_config, CATEGORIES_CACHE_TTL=ttl)

    before = time.time()
    assert story.get_categories(app.test_client()) == (story.SEED_CATEGORIES, "MISS")
    after = time.time()

    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url)
    key = app.config["CACHE_KEY_PREFIX"] + CATEGORIES_CACHE_KEY
    item = dynamodb.get_item(TableName=table_name, Key={"cache_key": {"S": key}})["Item"]
    # expires_at is DynamoDB's TTL attribute (whole seconds, rounded up);
    # expires_ms is what reads go by.
    # Counted from ``now`` truncated to the millisecond, as test_entries.py explains.
    assert int(before * 1000) / 1000 + ttl <= int(item["expires_at"]["N"]) <= after + ttl + 1
    assert (before + ttl) * 1000 - 1 <= int(item["expires_ms"]["N"]) <= (after + ttl) * 1000
    ttl_description = dynamodb.describe_time_to_live(TableName=table_name)
    assert ttl_description["TimeToLiveDescription"]["AttributeName"] == "expires_at"


@pytest.mark.parametrize("strategy", ["invalidate", "write-through"])
def test_with_dynamodb_unreachable_the_api_answers_from_the_database(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any], strategy: str
) -> None:
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    app = make_app(
        **{
            **dynamodb_cache_config,
            "CACHE_DYNAMODB_ENDPOINT_URL": nothing_listens,
            "CACHE_DYNAMODB_CREATE_TABLE": False,
            "CATEGORIES_CACHE_STRATEGY": strategy,
        }
    )
    client = app.test_client()
    started = time.monotonic()

    assert story.get_categories(client) == (story.SEED_CATEGORIES, "MISS")
    assert story.post_category(client, "Toys") == story.TOYS
    assert story.get_categories(client) == ([*story.SEED_CATEGORIES, story.TOYS], "MISS")
    assert time.monotonic() - started < OUTAGE_BUDGET_SECONDS


def test_without_a_signing_key_the_app_refuses_to_start(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]
) -> None:
    """A per-process default key would make every instance reject the others' entries."""
    del dynamodb_cache_config["CACHE_DYNAMODB_SIGNING_KEY"]

    with pytest.raises(ValueError, match="CACHE_DYNAMODB_SIGNING_KEY"):
        make_app(init_db=False, **dynamodb_cache_config)


def test_the_cache_cli_is_registered(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any], table_name: str
) -> None:
    app = make_app(init_db=False, **dynamodb_cache_config)

    result = app.test_cli_runner().invoke(args=["cache", "status"])

    assert result.exit_code == 0, result.output
    assert table_name in result.output


# --- Two app processes sharing one SQLite file and one DynamoDB table ---------------


def http_get_categories(url: str) -> tuple[list[dict[str, Any]], str]:
    response = requests.get(f"{url}/categories", timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 200
    return response.json(), response.headers["X-Cache"]


def http_post_category(url: str, name: str) -> dict[str, Any]:
    return post_category_over_http(url, name, HTTP_TIMEOUT_SECONDS).json()


@pytest.mark.slow
def test_a_write_through_one_process_is_what_the_other_process_reads_next(
    make_app: Callable[..., Flask],
    dynamodb_cache_config: dict[str, Any],
    database_uri: str,
    tmp_path: Path,
) -> None:
    """Process A writes through, process B invalidates; both share DB and table.

    A POST through A makes B's next GET a HIT that already has the category; a
    POST through B makes A's next GET a MISS that loads it from the database.
    """
    setup_app = make_app(**dynamodb_cache_config)  # creates the table, seeds the database
    shared = {
        **on_the_created_table(dynamodb_cache_config, database_uri),
        # Which process reads what, not a slow DynamoDB: on a busy 2-core machine a store
        # past the deployed request-path budget (0.1 s / 0.3 s) is owed, as it must be
        # (tests/integration/test_category_writes.py), and the next GET is then a MISS.
        "CACHE_DYNAMODB_GET_TIMEOUT": 2.0,
        "CACHE_DYNAMODB_WRITE_TIMEOUT": 2.0,
    }

    with ExitStack() as servers:
        writes_through, invalidates = (
            servers.enter_context(
                gunicorn_instance(
                    strategy, {**shared, "CATEGORIES_CACHE_STRATEGY": strategy}, tmp_path, workers=1
                )
            )
            for strategy in ("write-through", "invalidate")
        )
        for instance in (writes_through, invalidates):
            wait_until_healthy(instance.url, instance.process, instance.log_path)
            # Each its own host's folder: a folder shared with the other instance, or with
            # another test's, would mix their elections, owed versions and shared copies.
            assert any((tmp_path / f"{instance.name}-instance").iterdir())
        writes_through, invalidates = writes_through.url, invalidates.url

        assert http_get_categories(invalidates) == (story.SEED_CATEGORIES, "MISS")
        assert http_get_categories(writes_through) == (story.SEED_CATEGORIES, "HIT")

        assert http_post_category(writes_through, "Toys") == story.TOYS
        assert http_get_categories(invalidates) == ([*story.SEED_CATEGORIES, story.TOYS], "HIT")

        games = http_post_category(invalidates, "Games")
        with_games = [*story.SEED_CATEGORIES, story.TOYS, games]
        assert http_get_categories(writes_through) == (with_games, "MISS")
        assert http_get_categories(invalidates) == (with_games, "HIT")

    assert story.categories_in_db(setup_app) == with_games


@pytest.mark.slow
def test_a_graceful_stop_finishes_the_refresh_a_write_queued(
    make_app: Callable[..., Flask],
    dynamodb_cache_config: dict[str, Any],
    database_uri: str,
    tmp_path: Path,
) -> None:
    """refresh-async: SIGTERM right after the POST, mid-reload; the worker drains its pool first."""
    setup_app = make_app(**dynamodb_cache_config)
    settings = {
        **on_the_created_table(dynamodb_cache_config, database_uri),
        "CATEGORIES_CACHE_STRATEGY": "refresh-async",
        "DB_LATENCY_MS": 1500,
    }
    with gunicorn_instance("refresh-async", settings, tmp_path, workers=1) as instance:
        wait_until_healthy(instance.url, instance.process, instance.log_path)
        assert http_post_category(instance.url, "Toys") == story.TOYS
        # Leaving the block sends SIGTERM while the reload still sleeps its 1.5 s.

    assert instance.process.returncode == 0, instance.log_path.read_text()
    assert story.cached_categories(setup_app) == [*story.SEED_CATEGORIES, story.TOYS]


@pytest.mark.slow
def test_workers_starting_together_on_a_missing_table_all_boot(
    dynamodb_cache_config: dict[str, Any], database_uri: str, tmp_path: Path
) -> None:
    """What `make run-dynamodb` does: every worker creates the table; none may fail to boot."""
    settings = {**dynamodb_cache_config, "SQLALCHEMY_DATABASE_URI": database_uri}
    prepare({**settings, "CACHE_DYNAMODB_TABLE": "unused-by-init-db"}, quiet=True)
    with gunicorn_instance("boot", settings, tmp_path, workers=3) as instance:
        wait_until_healthy(instance.url, instance.process, instance.log_path)
        for _ in range(3):  # each worker answers, once the table is there
            assert http_get_categories(instance.url)[0] == story.SEED_CATEGORIES
        log = instance.log_path.read_text()

    assert log.count("Booting worker") == 3, log
    assert "Worker failed to boot" not in log
    assert instance.process.returncode == 0, log


# --- `make run-dynamodb`: DynamoDB Local and gunicorn under one launcher ----------------

#: The JVM, then gunicorn's master and workers: all stopped, in seconds, on a normal stop.
RUN_STOP_TIMEOUT_SECONDS = 30


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_run_dynamodb_exits_0_quietly_and_leaves_nothing_behind(
    stop_signal: signal.Signals,
    dynamodb_cache_config: dict[str, Any],
    database_uri: str,
    tmp_path: Path,
) -> None:
    """The Makefile's recipe, stopped as a terminal's Ctrl-C or as make/CI/systemd stop it.

    Both signals go to the whole process group, as a terminal sends Ctrl-C: the
    launcher, the JVM, gunicorn's master and its workers. Before: the launcher's
    KeyboardInterrupt traceback, gunicorn SIGKILLed by it (status -2 / 130) and
    its Prometheus directory left in TMPDIR.
    """
    ddb_port, web_port = free_port(), free_port()
    settings = {
        **dynamodb_cache_config,
        "CACHE_DYNAMODB_ENDPOINT_URL": f"http://127.0.0.1:{ddb_port}",
        "SQLALCHEMY_DATABASE_URI": database_uri,
    }
    temporary_files = tmp_path / "tmp"
    temporary_files.mkdir()
    environment = flask_environment(settings) | {
        "GUNICORN_BIND": f"127.0.0.1:{web_port}",
        "GUNICORN_WORKERS": "2",
        "TMPDIR": str(temporary_files),  # where gunicorn.conf.py creates its Prometheus directory
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "scripts.dynamodb_local", "--port", str(ddb_port), "--"]
    command += [sys.executable, "-m", "gunicorn", "wsgi:app"]
    log_path = tmp_path / "run-dynamodb.log"

    with log_path.open("wb") as log:
        run = subprocess.Popen(
            command,
            cwd=REPOSITORY_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a terminal's job is
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{web_port}", run, log_path)
        os.killpg(run.pid, stop_signal)
        run.wait(timeout=RUN_STOP_TIMEOUT_SECONDS)
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing is left on success
            os.killpg(run.pid, signal.SIGKILL)
    output = log_path.read_text()

    assert run.returncode == 0, output
    assert "Traceback" not in output
    assert list(temporary_files.iterdir()) == [], "the Prometheus directory is removed"
