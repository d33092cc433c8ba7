"""The app on the DynamoDB backend: what lands in the table, outages, and a fleet of two.

The cache-aside story itself runs on DynamoDB in tests/test_categories.py
(parametrized over both backends); this module covers what only a shared,
remote cache has.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from flask import Flask

from cache_backends.local import DynamoDBLocal, free_port
from ecommerce.categories.cache_policy import CATEGORIES_CACHE_KEY
from tests.conftest import categories_in_db
from tests.test_categories import SEED_CATEGORIES, TOYS, get_categories, post_category

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
#: gunicorn imports Flask, SQLAlchemy and botocore: about a second on 2 cores.
SERVER_START_TIMEOUT_SECONDS = 15.0
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
    assert get_categories(app.test_client()) == (SEED_CATEGORIES, "MISS")
    after = time.time()

    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url)
    key = app.config["CACHE_KEY_PREFIX"] + CATEGORIES_CACHE_KEY
    item = dynamodb.get_item(TableName=table_name, Key={"cache_key": {"S": key}})["Item"]
    # expires_at is DynamoDB's TTL attribute (whole seconds, rounded up);
    # expires_ms is what reads go by.
    assert before + ttl <= int(item["expires_at"]["N"]) <= after + ttl + 1
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

    assert get_categories(client) == (SEED_CATEGORIES, "MISS")
    assert post_category(client, "Toys") == TOYS
    assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "MISS")
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


@contextmanager
def gunicorn_server(settings: dict[str, Any], log_path: Path) -> Iterator[str]:
    """Serve ``wsgi:app`` in its own process, configured through FLASK_* only; yield its URL.

    An empty config file keeps the repository's gunicorn.conf.py (worker count
    from the CPU count, metrics directory) out of the test: one worker is enough.
    """
    port = free_port()
    config_file = log_path.with_suffix(".conf.py")
    config_file.write_text("")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    environment.update({f"FLASK_{name}": str(value) for name, value in settings.items()})
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "--config", str(config_file)),
                *("--bind", f"127.0.0.1:{port}", "--workers", "1", "wsgi:app"),
            ],
            cwd=REPOSITORY_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def wait_until_serving(url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=HTTP_TIMEOUT_SECONDS).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not serve in time; its log:\n{log_path.read_text()}")


def http_get_categories(url: str) -> tuple[list[dict[str, Any]], str]:
    response = requests.get(f"{url}/categories", timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 200
    return response.json(), response.headers["X-Cache"]


def http_post_category(url: str, name: str) -> dict[str, Any]:
    response = requests.post(f"{url}/categories", json={"name": name}, timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 201, response.text
    return response.json()


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
        **{k: v for k, v in dynamodb_cache_config.items() if k != "CACHE_DYNAMODB_CREATE_TABLE"},
        "SQLALCHEMY_DATABASE_URI": database_uri,
    }

    with ExitStack() as servers:
        writes_through, invalidates = (
            servers.enter_context(
                gunicorn_server(
                    {**shared, "CATEGORIES_CACHE_STRATEGY": strategy}, tmp_path / f"{strategy}.log"
                )
            )
            for strategy in ("write-through", "invalidate")
        )
        wait_until_serving(writes_through, tmp_path / "write-through.log")
        wait_until_serving(invalidates, tmp_path / "invalidate.log")

        assert http_get_categories(invalidates) == (SEED_CATEGORIES, "MISS")
        assert http_get_categories(writes_through) == (SEED_CATEGORIES, "HIT")

        assert http_post_category(writes_through, "Toys") == TOYS
        assert http_get_categories(invalidates) == ([*SEED_CATEGORIES, TOYS], "HIT")

        games = http_post_category(invalidates, "Games")
        with_games = [*SEED_CATEGORIES, TOYS, games]
        assert http_get_categories(writes_through) == (with_games, "MISS")
        assert http_get_categories(invalidates) == (with_games, "HIT")

    assert categories_in_db(setup_app) == with_games
