"""docs/region.md runs as written: its example app on SimpleCache and on DynamoDB Local,
and its contract example on a backend of the reader's own.

The page shows ``docs/examples/prices_app.py`` verbatim (checked here), and the app is
that file, loaded by path (``runpy``) and configured through ``create_app``'s parameter,
as the page says; the contract example is written to a file and run by its own pytest.
"""

from __future__ import annotations

import re
import runpy
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cache_backends.reconciler import ReconcileOutcome
from devtools import REPOSITORY_ROOT
from tests.support.readme import code_block_after

PAGE = REPOSITORY_ROOT / "docs" / "region.md"
EXAMPLE = REPOSITORY_ROOT / "docs" / "examples" / "prices_app.py"
TOKEN = "test-admin-token"
AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}
#: The example's seed data.
SEEDED = {"EUR": 1.0, "USD": 1.08}
#: A background refresh (refresh-async) lands within this, or the test fails.
WAIT_SECONDS = 10.0
#: What the first read after a change answers, per strategy: (X-Cache, the prices are new).
#: refresh-async serves the old prices as STALE until its refresh lands, then the new as HIT.
FIRST_READ_AFTER_A_CHANGE = {
    "invalidate": {("MISS", True)},
    "write-through": {("HIT", True)},
    "refresh-async": {("STALE", False), ("HIT", True)},
}

MakePricesApp = Callable[..., Flask]


def test_the_page_shows_the_example_file_unchanged() -> None:
    assert code_block_after("## The app", "python", document=PAGE) == EXAMPLE.read_text()


@pytest.fixture(params=["SimpleCache", "DynamoDBCache"])
def cache_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The page's two runs: Flask-Caching's SimpleCache, our backend on DynamoDB Local."""
    if request.param == "DynamoDBCache":
        config: dict[str, Any] = request.getfixturevalue("dynamodb_cache_config")
        return config
    return {"CACHE_TYPE": "SimpleCache"}


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "prices.sqlite"


@pytest.fixture
def make_prices_app(
    clean_flask_env: None, cache_config: dict[str, Any], database: Path
) -> Iterator[MakePricesApp]:
    """``create_app`` of the example file, on the test's database and cache; stopped after."""
    built: list[Flask] = []

    def make(**config: Any) -> Flask:
        create_app = runpy.run_path(str(EXAMPLE), run_name="prices_app")["create_app"]
        app: Flask = create_app(
            {
                "TESTING": True,
                "DATABASE": str(database),
                "ADMIN_TOKEN": TOKEN,
                **cache_config,
                **config,
            }
        )
        built.append(app)
        return app

    yield make
    for app in built:
        assert app.extensions["prices_region"].stop(), "a background refresh outlived its test"


def read(client: FlaskClient) -> tuple[str, dict[str, float]]:
    response = client.get("/prices")
    assert response.status_code == 200
    return response.headers["X-Cache"], response.get_json()


def changed_with_plain_sql(database: Path, currency: str, rate: float) -> None:
    """A change the app never hears of (a back-office tool): only the reconciler repairs it."""
    with closing(sqlite3.connect(database)) as db, db:
        db.execute("INSERT OR REPLACE INTO prices VALUES (?, ?)", (currency, rate))
        db.execute("UPDATE version SET n = n + 1")


def assert_reads_after_a_change(
    client: FlaskClient, strategy: str, old: dict[str, float], new: dict[str, float]
) -> None:
    """The first read answers as the strategy says, and every read until the new prices is
    the old ones as STALE: none goes back once the new prices were served."""
    status, prices = read(client)
    assert (status, prices == new) in FIRST_READ_AFTER_A_CHANGE[strategy], (status, prices)
    deadline = time.monotonic() + WAIT_SECONDS
    while prices != new:
        assert (status, prices) == ("STALE", old)
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.02)
        status, prices = read(client)
    assert read(client) == ("HIT", new)


@pytest.mark.parametrize("strategy", list(FIRST_READ_AFTER_A_CHANGE))
def test_the_example_caches_its_key_and_follows_writes(
    make_prices_app: MakePricesApp, database: Path, strategy: str
) -> None:
    app = make_prices_app(PRICES_STRATEGY=strategy)
    region = app.extensions["prices_region"]
    client = app.test_client()

    assert read(client) == ("MISS", SEEDED)
    assert read(client) == ("HIT", SEEDED)

    assert client.put("/prices/EUR", json={"rate": 0.95}).status_code == 401
    written = client.put("/prices/EUR", json={"rate": 0.95}, headers=AUTHORIZATION)
    assert written.get_json() == {"currency": "EUR", "rate": 0.95, "version": 1}
    after_write = {**SEEDED, "EUR": 0.95}
    assert_reads_after_a_change(client, strategy, SEEDED, after_write)

    changed_with_plain_sql(database, "GBP", 0.85)
    assert read(client) == ("HIT", after_write), "nothing told the region yet"
    reconciliation = region.reconcile_once()
    assert reconciliation.outcome is ReconcileOutcome.BEHIND
    assert (reconciliation.database_version, reconciliation.cached_version) == (2, 1)
    assert_reads_after_a_change(client, strategy, after_write, {**after_write, "GBP": 0.85})


def test_the_reconcile_command_fences_an_empty_cache(make_prices_app: MakePricesApp) -> None:
    """Nothing cached: a tombstone at the database's version, so no older load lands fresh."""
    app = make_prices_app()

    result = app.test_cli_runner().invoke(args=["reconcile-prices"])

    assert (result.exit_code, result.output) == (0, "absent\n")
    assert read(app.test_client()) == ("MISS", SEEDED)


def test_the_contract_example_runs_the_shipped_contract(tmp_path: Path) -> None:
    """The page's test module, run by a pytest of its own outside this repository's tests."""
    test_module = tmp_path / "test_my_cache.py"
    test_module.write_text(
        code_block_after("## Run the contract on your own backend", "python", document=PAGE)
    )

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_module.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\d+ passed in ", result.stdout.splitlines()[-1]), result.stdout
