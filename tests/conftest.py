"""Shared fixtures: one DynamoDB Local and one PostgreSQL per test session, fake AWS credentials.

Credentials are forced to dummies before anything imports botocore, so no test
can ever reach a real AWS account.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_caching.backends.base import BaseCache
from sqlalchemy import event

from cache_backends.local import DynamoDBLocal
from scripts.postgresql import LocalPostgreSQL

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)

#: Tests sign entries with this; the app refuses to start with DynamoDB and no key.
TEST_SIGNING_KEY = "test-signing-key"
RELAXED_GET_TIMEOUT_SECONDS = 1.0
#: Writes are refused without a configured token; test apps have this one, and their
#: test clients send it unless a test sends its own Authorization header.
TEST_ADMIN_TOKEN = "test-admin-token"
ADMIN_AUTHORIZATION = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


class AdminTestClient(FlaskClient):
    """A test client that carries the test admin token, as an operator's client would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_AUTHORIZATION"] = ADMIN_AUTHORIZATION["Authorization"]


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """The session's DynamoDB Local (in memory, shared by every test)."""
    with DynamoDBLocal() as ddb:
        yield ddb


@pytest.fixture(scope="session")
def postgresql() -> Iterator[LocalPostgreSQL]:
    """The session's PostgreSQL server (Debian's package, a temporary data directory)."""
    with LocalPostgreSQL() as server:
        yield server


#: Marks a test or module to run once on SQLite (the local default) and once on
#: PostgreSQL (the production database): ``pytestmark = ON_BOTH_DATABASES``.
ON_BOTH_DATABASES = pytest.mark.parametrize("database_uri", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def table_name() -> str:
    """A table name no other test uses, so tests never see each other's items."""
    return f"test-cache-{uuid.uuid4().hex[:12]}"


# --- The ecommerce app (fixtures for tests/test_config.py, test_categories.py, ...) ---


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
def make_app(clean_flask_env: None, database_uri: str) -> Iterator[Callable[..., Flask]]:
    """Build an app on the test's database, by default with schema and seed data.

    After the test, each app's background refreshes are drained and its connection
    pool closed (PostgreSQL counts connections).
    """
    from ecommerce import create_app
    from ecommerce.categories.cache_policy import drain_background_refreshes
    from ecommerce.extensions import db

    built: list[Flask] = []

    def build(*, init_db: bool = True, **overrides: Any) -> Flask:
        settings = {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "ADMIN_TOKEN": TEST_ADMIN_TOKEN,
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
        assert drain_background_refreshes(app), "a background refresh outlived its test"
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
        # Not the production 0.1 s: on a busy 2-core test machine a GetItem can take
        # longer, and a read answered by the database would break a story's HIT/STALE.
        # tests/test_faults.py sets the production budget back.
        "CACHE_DYNAMODB_GET_TIMEOUT": RELAXED_GET_TIMEOUT_SECONDS,
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


@contextmanager
def recorded_sql(app: Flask) -> Iterator[list[str]]:
    """Collect every SQL statement ``app`` sends while the block runs.

    A real SQLAlchemy event on the real engine: proof that a cache hit, or
    /healthz, never reached the database.
    """
    from ecommerce.extensions import db

    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


class RaisingCache(BaseCache):
    """A cache backend whose every call raises, as a misbehaving future backend might.

    Selected with CACHE_TYPE="tests.conftest.RaisingCache"; proves the app treats any
    backend exception as a miss rather than a 500.
    """

    def _unreachable(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache backend unreachable")

    get = set = add = delete = has = clear = _unreachable
    get_many = set_many = delete_many = inc = dec = _unreachable


def record_dynamodb_calls(backend: Any) -> list[str]:
    """Every DynamoDB operation ``backend`` sends from now on, as botocore names it.

    Counted on botocore's own event hooks, below the backend: a hidden call (a
    DescribeTable, a retry's second GetItem) shows up too. ``backend`` is a
    DynamoDBCache, or anything layered over one (``.remote``).
    """
    backend = getattr(backend, "remote", backend)
    sent: list[str] = []
    for entry_model in (backend._model, backend._write_once_model, backend._hot_read_model):
        entry_model._get_connection().connection.client.meta.events.register(
            "before-call.dynamodb", lambda model, **_: sent.append(model.name)
        )
    return sent


def cached_categories(app: Flask) -> Any:
    """The list the app's cache holds as fresh right now (None: nothing, or not fresh)."""
    from ecommerce.categories.cache_policy import cached_entry

    with app.app_context():
        entry = cached_entry()
    return entry.value if entry is not None and entry.is_fresh(time.time()) else None


def categories_in_db(app: Flask) -> list[dict[str, Any]]:
    """The categories table read straight from the database, bypassing any cache."""
    from ecommerce.categories.cache_policy import load_categories_from_db

    with app.app_context():
        return [dict(category) for category in load_categories_from_db()[0]]
