"""Shared fixtures: one DynamoDB Local and one PostgreSQL per test session, fake AWS credentials.

Credentials are forced to the development dummies before anything imports botocore,
so no test can ever reach a real AWS account. The helpers the fixtures are built
from live in tests/support/, where test modules import them from.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from devtools.credentials import LOCAL_AWS_ENVIRONMENT
from devtools.dynamodb_local import DynamoDBLocal
from devtools.postgresql import LocalPostgreSQL
from tests.support.app import (
    TEST_ADMIN_TOKEN,
    AdminTestClient,
)
from tests.support.caches import (
    RELAXED_GET_TIMEOUT_SECONDS,
    RELAXED_WRITE_TIMEOUT_SECONDS,
    TEST_SIGNING_KEY,
)
from tests.support.races import PausedLoad

os.environ.update(LOCAL_AWS_ENVIRONMENT)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """The test process's cyclic garbage collector held off while a test body runs.

    Late in a full run this process tracks ~500,000 objects and each full collection
    stalls every thread for 0.3-1.5 s (measured with gc.callbacks: 328 of them in one
    run), long enough to break any in-process latency bound at random. That is the
    harness, not the app (gunicorn workers freeze what they built); the collector
    catches up in setup and teardown instead, and an explicit gc.collect() still works.
    """
    gc.disable()
    try:
        return (yield)
    finally:
        gc.enable()


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """The session's DynamoDB Local (in memory, shared by every test)."""
    with DynamoDBLocal() as ddb:
        ddb.warm_up()  # tests that count on the 0.1 s get budget must not meet a cold JVM
        yield ddb


@pytest.fixture(scope="session")
def postgresql() -> Iterator[LocalPostgreSQL]:
    """The session's PostgreSQL server (Debian's package, a temporary data directory)."""
    with LocalPostgreSQL() as server:
        yield server


@pytest.fixture
def table_name() -> str:
    """A table name no other test uses, so tests never see each other's items."""
    return f"test-cache-{uuid.uuid4().hex[:12]}"


# --- The ecommerce app (fixtures for tests/integration/test_config.py, test_categories.py, ...)


@pytest.fixture
def clean_flask_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop FLASK_* variables so a developer's shell cannot change what a test configures."""
    for name in [name for name in os.environ if name.startswith("FLASK_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def database_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of this test's own, which apps built in one test share.

    A SQLite file; under ON_BOTH_DATABASES, also a new database on the session's PostgreSQL.
    """
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("postgresql").create_database()
    return f"sqlite:///{tmp_path / 'categories.sqlite'}"


@pytest.fixture
def make_app(
    clean_flask_env: None, database_uri: str, tmp_path: Path
) -> Iterator[Callable[..., Flask]]:
    """Build an app on the test's database, by default with schema and seed data.

    After the test, each app's background refreshes are drained and its connection
    pool closed (PostgreSQL counts connections).
    """
    from ecommerce import create_app
    from ecommerce.categories.cache_policy import stop_categories_cache
    from ecommerce.extensions import db

    built: list[Flask] = []

    def build(*, init_db: bool = True, **overrides: Any) -> Flask:
        settings = {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "ADMIN_TOKEN": TEST_ADMIN_TOKEN,
            # The apps of one test are one instance: they share the change listener's
            # board, which must not outlive the test's database.
            "CATALOGUE_EVENTS_DIR": str(tmp_path / "instance"),
            **overrides,
        }
        app = create_app(settings)
        app.test_client_class = AdminTestClient
        built.append(app)
        if init_db:
            result = app.test_cli_runner().invoke(args=["init-db"])
            assert result.exit_code == 0, result.output
        return app

    yield build
    for app in built:
        # A refresh still queued would load (and count in the process-wide metrics)
        # during the next test: let it finish here.
        assert stop_categories_cache(app), "a background refresh outlived its test"
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The default app: SimpleCache, invalidate strategy, seeded database."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def dynamodb_cache_config(dynamodb_local: DynamoDBLocal, table_name: str) -> dict[str, Any]:
    """Settings selecting the DynamoDB backend on this test's own table in DynamoDB Local."""
    return {
        "CACHE_TYPE": "cache_backends.dynamodb.DynamoDBCache",
        "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
        "CACHE_DYNAMODB_REGION": "us-east-1",
        "CACHE_DYNAMODB_TABLE": table_name,
        "CACHE_DYNAMODB_CREATE_TABLE": True,
        "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
        # tests/integration/test_faults.py sets the production budget back.
        "CACHE_DYNAMODB_GET_TIMEOUT": RELAXED_GET_TIMEOUT_SECONDS,
        "CACHE_DYNAMODB_WRITE_TIMEOUT": RELAXED_WRITE_TIMEOUT_SECONDS,
    }


@pytest.fixture(params=["SimpleCache", "DynamoDBCache"])
def make_story_app(
    request: pytest.FixtureRequest, make_app: Callable[..., Flask]
) -> Callable[..., Flask]:
    """Build seeded apps on one backend; DynamoDB gets a fresh table in DynamoDB Local.

    Tests that take it run twice: the app must tell the same story on both backends.
    """
    backend_settings: dict[str, Any] = {}
    if request.param == "DynamoDBCache":
        backend_settings = request.getfixturevalue("dynamodb_cache_config")

    def build(**overrides: Any) -> Flask:
        return make_app(**backend_settings, **overrides)

    return build


# --- Races (tests/integration/test_cache_races.py, test_category_writes.py) ---------


@pytest.fixture
def paused_load(monkeypatch: pytest.MonkeyPatch) -> PausedLoad:
    """Hook the pause into the point where DB_LATENCY_MS waits after reading."""
    from ecommerce.categories import repository

    pause = PausedLoad()
    slow_database = repository._simulate_slow_database

    def pausing_slow_database() -> None:
        pause.after_snapshot()
        slow_database()

    monkeypatch.setattr(repository, "_simulate_slow_database", pausing_slow_database)
    return pause


@pytest.fixture
def in_background() -> Iterator[Callable[..., Future[Any]]]:
    """``submit`` of a two-thread pool that is joined when the test ends."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool.submit
