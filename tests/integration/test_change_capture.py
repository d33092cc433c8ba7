"""Changes are captured by the database: the triggers of migration 0004_catalogue_triggers.

Every change is made with plain SQL on a DB-API connection of its own (the
``sqlite3`` module, or psycopg as ``psql`` would), never through the app: a
person's change must raise the catalogue version exactly as an API write does.
The version is read with ``repository.current_catalogue_version``, the committed
state another process (the reconciler) sees.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from ecommerce.categories import repository
from ecommerce.categories.models import CATALOGUE_CHANNEL
from tests.support.app import ON_BOTH_DATABASES, SEED_CATEGORIES

ON_POSTGRESQL = pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
#: Long enough for a notification PostgreSQL sends at once to arrive on a busy machine.
NOTIFY_TIMEOUT_SECONDS = 5.0
#: How long a notification that must not come is waited for.
SILENCE_SECONDS = 0.5
#: Rows a bulk statement changes: SQLite's row triggers raise the version this often.
BULK_ROWS = 3
BULK_INSERT = (
    "INSERT INTO categories (name, name_key) VALUES "
    "('Toys', 'toys'), ('Games', 'games'), ('Garden', 'garden')"
)
INSERT_TOYS = "INSERT INTO categories (id, name, name_key) VALUES (40, 'Toys', 'toys')"
UNKNOWN_ID = 999


@contextmanager
def plain_sql(database_uri: str) -> Iterator[Any]:
    """A DB-API connection outside SQLAlchemy and the app, in a transaction on first use."""
    url = make_url(database_uri)
    if url.get_backend_name() == "postgresql":
        connection = psycopg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
    else:
        connection = sqlite3.connect(url.database)
    try:
        yield connection
    finally:
        connection.close()


def run_and_commit(database_uri: str, *statements: str) -> None:
    with plain_sql(database_uri) as connection:
        for statement in statements:
            connection.execute(statement)
        connection.commit()


def is_postgresql(database_uri: str) -> bool:
    return make_url(database_uri).get_backend_name() == "postgresql"


@pytest.fixture
def version_now(make_app: Callable[..., Flask]) -> Callable[[], int]:
    """The committed catalogue version of a seeded database, as the reconciler reads it."""
    app = make_app()

    def read() -> int:
        with app.app_context():
            return repository.current_catalogue_version()

    return read


@ON_BOTH_DATABASES
def test_a_plain_sql_insert_rename_and_delete_each_raise_the_version(
    version_now: Callable[[], int], database_uri: str
) -> None:
    seeded = version_now()

    run_and_commit(database_uri, INSERT_TOYS)
    assert version_now() == seeded + 1
    run_and_commit(
        database_uri, "UPDATE categories SET name = 'Games', name_key = 'games' WHERE id = 40"
    )
    assert version_now() == seeded + 2
    run_and_commit(database_uri, "DELETE FROM categories WHERE id = 40")
    assert version_now() == seeded + 3


@ON_BOTH_DATABASES
def test_a_rolled_back_change_raises_nothing_and_others_never_see_its_raise(
    version_now: Callable[[], int], database_uri: str
) -> None:
    seeded = version_now()

    with plain_sql(database_uri) as connection:
        connection.execute(INSERT_TOYS)
        connection.execute("UPDATE categories SET name = 'Tools', name_key = 'tools' WHERE id = 1")
        connection.execute("DELETE FROM categories WHERE id = 2")
        (raised,) = connection.execute("SELECT version FROM catalogue_version").fetchone()
        assert raised > seeded  # the writer sees its own raise...
        assert version_now() == seeded  # ...nobody else does before it commits
        connection.rollback()

    assert version_now() == seeded


@ON_BOTH_DATABASES
def test_a_statement_that_matches_no_row_raises_nothing(
    version_now: Callable[[], int], database_uri: str
) -> None:
    """On PostgreSQL too, whose statement triggers fire for every statement: nothing changed."""
    seeded = version_now()

    run_and_commit(
        database_uri,
        f"UPDATE categories SET name = 'Tools', name_key = 'tools' WHERE id = {UNKNOWN_ID}",
        f"DELETE FROM categories WHERE id = {UNKNOWN_ID}",
    )

    assert version_now() == seeded


@ON_BOTH_DATABASES
def test_a_multi_row_insert_raises_once_on_postgresql_once_per_row_on_sqlite(
    version_now: Callable[[], int], database_uri: str
) -> None:
    """PostgreSQL's triggers are per statement; SQLite has row triggers only (still monotonic)."""
    seeded = version_now()

    run_and_commit(database_uri, BULK_INSERT)

    raises = 1 if is_postgresql(database_uri) else BULK_ROWS
    assert version_now() == seeded + raises


@ON_BOTH_DATABASES
def test_a_missing_version_row_is_created_by_the_next_change_not_skipped(
    version_now: Callable[[], int], database_uri: str
) -> None:
    run_and_commit(database_uri, "DELETE FROM catalogue_version")
    assert version_now() == 0

    run_and_commit(database_uri, INSERT_TOYS)

    assert version_now() == 1


@ON_BOTH_DATABASES
def test_an_api_write_returns_the_version_its_trigger_raised_after_a_plain_sql_one(
    make_app: Callable[..., Flask], database_uri: str
) -> None:
    """The repository no longer raises the version: it reads what the trigger wrote."""
    app = make_app()
    with app.app_context():
        seeded = repository.current_catalogue_version()
    run_and_commit(database_uri, INSERT_TOYS)

    with app.app_context():
        games, created_at = repository.create_category("Games")
        renamed_at = repository.rename_category(40, "Tools")[1]
        deleted_at = repository.delete_category(40)
        categories, listed_at = repository.list_categories_at_version()
        assert repository.current_catalogue_version() == deleted_at

    assert (created_at, renamed_at, deleted_at) == (seeded + 2, seeded + 3, seeded + 4)
    assert listed_at == deleted_at
    assert categories == [*SEED_CATEGORIES, games]


@ON_POSTGRESQL
def test_truncate_raises_the_version_on_postgresql(
    version_now: Callable[[], int], database_uri: str
) -> None:
    seeded = version_now()

    run_and_commit(database_uri, "TRUNCATE categories")

    assert version_now() == seeded + 1


@contextmanager
def listening(database_uri: str) -> Iterator[psycopg.Connection]:
    """A connection LISTENing on the catalogue channel (autocommit: LISTEN acts at once)."""
    with plain_sql(database_uri) as listener:
        listener.autocommit = True
        listener.execute(f"LISTEN {CATALOGUE_CHANNEL}")
        yield listener


def notifications(listener: psycopg.Connection, timeout: float) -> list[tuple[str, str]]:
    """(channel, payload) of what arrives within ``timeout`` seconds."""
    return [(note.channel, note.payload) for note in listener.notifies(timeout=timeout)]


@ON_POSTGRESQL
def test_a_listener_hears_the_new_version_once_per_statement_and_only_after_commit(
    version_now: Callable[[], int], database_uri: str
) -> None:
    seeded = version_now()

    with listening(database_uri) as listener, plain_sql(database_uri) as writer:
        writer.execute(BULK_INSERT)
        assert notifications(listener, SILENCE_SECONDS) == []  # not before the commit
        writer.commit()

        heard = listener.notifies(timeout=NOTIFY_TIMEOUT_SECONDS, stop_after=1)
        assert [(note.channel, note.payload) for note in heard] == [
            (CATALOGUE_CHANNEL, str(seeded + 1))
        ]
        assert notifications(listener, SILENCE_SECONDS) == []  # one statement, one notice

    assert version_now() == seeded + 1


@ON_POSTGRESQL
def test_a_listener_hears_nothing_of_a_rolled_back_change(
    version_now: Callable[[], int], database_uri: str
) -> None:
    seeded = version_now()

    with listening(database_uri) as listener, plain_sql(database_uri) as writer:
        writer.execute(INSERT_TOYS)
        writer.rollback()

        assert notifications(listener, SILENCE_SECONDS) == []

    assert version_now() == seeded
