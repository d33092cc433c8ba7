"""Schema migrations (ecommerce/migrations) through ``flask init-db``, on SQLite and PostgreSQL.

The upgrade a deployed database meets is tested on a database that the last
release before migrations really made: commit 6ad54cf's own code runs init-db and
POSTs categories, from a ``git archive`` of that commit.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from devtools import REPOSITORY_ROOT
from devtools.fleet import flask_environment
from devtools.postgresql import LocalPostgreSQL
from ecommerce.database import SCHEMA_LOCK_KEY
from ecommerce.extensions import db
from tests.support.app import ON_BOTH_DATABASES, TEST_ADMIN_TOKEN, categories_in_db

#: The last commit whose init-db made the schema with create_all, before any migration.
RELEASE_BEFORE_MIGRATIONS = "6ad54cf"
HEAD = "0004_catalogue_triggers"
#: The newest revision a database that create_all made can match: migrations came next.
LAST_CREATE_ALL_REVISION = "0003_name_key"
#: The writes migration 0004's triggers capture on each database (SQLite has no TRUNCATE).
CAPTURED_EVENTS = {
    "sqlite": ("insert", "update", "delete"),
    "postgresql": ("insert", "update", "delete", "truncate"),
}
#: On PostgreSQL the triggers share one function, which the downgrade drops too.
CAPTURE_FUNCTION = "raise_catalogue_version"
SEED = ["Electronics", "Clothing", "Books"]
FULLWIDTH_BOOKS = "\uff22\uff4f\uff4f\uff4b\uff53"
#: How long three init-db processes may take to start and reach the lock.
START_TIMEOUT_SECONDS = 30.0
#: What the old release's users added: letters beyond ASCII, whose case lower() folded
#: on PostgreSQL but not on SQLite.
ADDED_BEFORE_THE_UPGRADE = ["Toys", "Électronique", "Straße"]


def revision(app: Flask) -> str | None:
    with app.app_context(), db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def run_sql(database_uri: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run ``statements`` in one transaction, on a connection of their own; the last one's rows."""
    engine = create_engine(database_uri)
    with engine.begin() as connection:
        for statement in statements:
            result = connection.execute(text(statement))
        rows = [tuple(row) for row in result] if result.returns_rows else []
    engine.dispose()
    return rows


def stored_categories(database_uri: str) -> list[tuple[int, str]]:
    """(id, name) of every row, by plain SQL: it works on any revision of the schema."""
    return run_sql(database_uri, "SELECT id, name FROM categories ORDER BY id")


def capture_triggers(database_uri: str) -> set[str]:
    """The triggers on categories, and on PostgreSQL their function if it exists."""
    if make_url(database_uri).get_backend_name() == "postgresql":
        rows = run_sql(
            database_uri,
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgrelid = CAST('categories' AS regclass) "
            f"UNION ALL SELECT proname FROM pg_proc WHERE proname = '{CAPTURE_FUNCTION}'",
        )
    else:
        rows = run_sql(
            database_uri,
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'categories'",
        )
    return {name for (name,) in rows}


def expected_capture(database_uri: str) -> set[str]:
    """What capture_triggers finds on a database at HEAD."""
    dialect = make_url(database_uri).get_backend_name()
    triggers = {
        f"categories_{event}_raises_catalogue_version" for event in CAPTURED_EVENTS[dialect]
    }
    return (triggers | {CAPTURE_FUNCTION}) if dialect == "postgresql" else triggers


def version_after_a_plain_insert(database_uri: str) -> tuple[int, int]:
    """The catalogue version before and after a plain-SQL INSERT (a new name each time)."""
    (before,) = run_sql(database_uri, "SELECT version FROM catalogue_version")[0]
    (count,) = run_sql(database_uri, "SELECT count(*) FROM categories")[0]
    run_sql(
        database_uri,
        f"INSERT INTO categories (name, name_key) VALUES ('Plain {count}', 'plain {count}')",
    )
    (after,) = run_sql(database_uri, "SELECT version FROM catalogue_version")[0]
    return before, after


def init_db(app: Flask, *arguments: str) -> Any:
    return app.test_cli_runner().invoke(args=["init-db", *arguments])


def made_before_migrations(app: Flask, at_revision: str) -> None:
    """The schema create_all made at ``at_revision``'s time: the migrations' own, minus Alembic."""
    app.test_cli_runner().invoke(args=["db", "upgrade", at_revision], catch_exceptions=False)
    run_sql(app.config["SQLALCHEMY_DATABASE_URI"], "DROP TABLE alembic_version")


@ON_BOTH_DATABASES
def test_the_migrations_build_exactly_the_schema_of_the_models(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()

    with app.app_context(), db.engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect the lower(name) index: compared on PostgreSQL only.
        warnings.filterwarnings("ignore", "(Skipped unsupported|autogenerate skipping)")
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)

    assert differences == []
    assert revision(app) == HEAD


@ON_BOTH_DATABASES
def test_a_database_made_and_filled_by_the_release_before_migrations_is_upgraded_in_place(
    make_app: Callable[..., Flask], database_uri: str, tmp_path: Path
) -> None:
    """Every row keeps its id and name; afterwards case and width twins are refused."""
    old_release = tmp_path / "release"
    old_release.mkdir()
    archive = subprocess.run(
        ["git", "archive", RELEASE_BEFORE_MIGRATIONS],
        cwd=REPOSITORY_ROOT, check=True, capture_output=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(old_release)], input=archive, check=True)
    fill = (
        "from ecommerce import create_app\n"
        "app = create_app()\n"
        "assert app.test_cli_runner().invoke(args=['init-db']).exit_code == 0\n"
        "client = app.test_client()\n"
        "for name in sys.argv[1:]:\n"
        f"    reply = client.post('/categories', json={{'name': name}},"
        f" headers={{'Authorization': 'Bearer {TEST_ADMIN_TOKEN}'}})\n"
        "    assert reply.status_code == 201, reply.get_data(as_text=True)\n"
    )
    environment = flask_environment(
        {"SQLALCHEMY_DATABASE_URI": database_uri, "ADMIN_TOKEN": TEST_ADMIN_TOKEN}
    )
    subprocess.run(
        [sys.executable, "-c", f"import sys\n{fill}", *ADDED_BEFORE_THE_UPGRADE],
        cwd=old_release, env=environment, check=True, capture_output=True,
    )  # fmt: skip
    app = make_app(init_db=False)
    before = stored_categories(database_uri)
    assert [name for _, name in before] == SEED + ADDED_BEFORE_THE_UPGRADE

    result = init_db(app)

    assert result.exit_code == 0, result.output
    assert "made before migrations, matches revision 0001_initial" in result.output
    assert f"upgraded from 0001_initial to {HEAD}" in result.output
    assert stored_categories(database_uri) == before
    assert revision(app) == HEAD
    client = app.test_client()
    for twin in ("BOOKS", FULLWIDTH_BOOKS, "ÉLECTRONIQUE", "STRASSE"):
        assert client.post("/categories", json={"name": twin}).status_code == 409, twin
    assert client.post("/categories", json={"name": "Games"}).status_code == 201


@ON_BOTH_DATABASES
@pytest.mark.parametrize(
    "at_revision", ["0001_initial", "0002_catalogue_version", LAST_CREATE_ALL_REVISION]
)
def test_a_database_made_by_create_all_at_any_earlier_revision_is_adopted_not_rebuilt(
    make_app: Callable[..., Flask], at_revision: str
) -> None:
    app = make_app(init_db=False)
    made_before_migrations(app, at_revision)
    name_key = ", name_key" if at_revision == LAST_CREATE_ALL_REVISION else ""
    values = ", 'toys'" if at_revision == LAST_CREATE_ALL_REVISION else ""
    run_sql(
        app.config["SQLALCHEMY_DATABASE_URI"],
        f"INSERT INTO categories (id, name{name_key}) VALUES (7, 'Toys'{values})",
    )

    result = init_db(app)

    assert result.exit_code == 0, result.output
    assert f"matches revision {at_revision}" in result.output
    assert revision(app) == HEAD
    stored = stored_categories(app.config["SQLALCHEMY_DATABASE_URI"])
    assert (7, "Toys") in stored
    assert sorted(name for _, name in stored) == sorted([*SEED, "Toys"])
    # create_all never made triggers: the upgrade did, so changes are captured from now on.
    database_uri = app.config["SQLALCHEMY_DATABASE_URI"]
    assert capture_triggers(database_uri) == expected_capture(database_uri)


@ON_BOTH_DATABASES
def test_names_that_collide_under_the_new_rule_stop_the_upgrade_named_and_change_nothing(
    make_app: Callable[..., Flask],
) -> None:
    """ "Books" and its fullwidth twin were two categories before name keys; not after."""
    app = make_app(init_db=False)
    made_before_migrations(app, "0002_catalogue_version")
    database_uri = app.config["SQLALCHEMY_DATABASE_URI"]
    names = f"('Books'), ('{FULLWIDTH_BOOKS}'), ('Toys')"
    run_sql(database_uri, f"INSERT INTO categories (name) VALUES {names}")

    result = init_db(app)

    assert result.exit_code == 1
    assert f"'Books' = '{FULLWIDTH_BOOKS}'" in result.output
    assert "Rename or delete all but one" in result.output
    assert stored_categories(database_uri) == [(1, "Books"), (2, FULLWIDTH_BOOKS), (3, "Toys")]
    assert revision(app) is None  # not even stamped: the next init-db starts from scratch

    run_sql(database_uri, "DELETE FROM categories WHERE id = 2")
    assert init_db(app).exit_code == 0
    assert revision(app) == HEAD


@ON_BOTH_DATABASES
def test_a_downgrade_and_the_upgrade_again_keep_every_row(make_app: Callable[..., Flask]) -> None:
    """docs/deploy.md's roll-back of a release whose migration ran: db downgrade, then re-run."""
    app = make_app()
    app.test_client().post("/categories", json={"name": "Toys"})
    before = categories_in_db(app)

    downgrade = app.test_cli_runner().invoke(args=["db", "downgrade", "0002_catalogue_version"])

    assert downgrade.exit_code == 0, downgrade.output
    assert revision(app) == "0002_catalogue_version"
    assert init_db(app).exit_code == 0
    assert revision(app) == HEAD
    assert categories_in_db(app) == before


@ON_BOTH_DATABASES
def test_the_capture_triggers_go_with_their_downgrade_and_come_back_with_the_upgrade(
    make_app: Callable[..., Flask], database_uri: str
) -> None:
    app = make_app()
    assert capture_triggers(database_uri) == expected_capture(database_uri)
    before, after = version_after_a_plain_insert(database_uri)
    assert after == before + 1

    downgrade = app.test_cli_runner().invoke(args=["db", "downgrade", LAST_CREATE_ALL_REVISION])

    assert downgrade.exit_code == 0, downgrade.output
    assert revision(app) == LAST_CREATE_ALL_REVISION
    assert capture_triggers(database_uri) == set()  # the function too, on PostgreSQL
    before, after = version_after_a_plain_insert(database_uri)
    assert after == before

    assert init_db(app).exit_code == 0
    assert revision(app) == HEAD
    assert capture_triggers(database_uri) == expected_capture(database_uri)
    before, after = version_after_a_plain_insert(database_uri)
    assert after == before + 1


@ON_BOTH_DATABASES
def test_reset_leaves_the_capture_triggers_in_place(
    make_app: Callable[..., Flask], database_uri: str
) -> None:
    """The tables go, and their triggers with them; PostgreSQL's function stays and is replaced."""
    app = make_app()

    assert init_db(app, "--reset", "--yes").exit_code == 0

    assert capture_triggers(database_uri) == expected_capture(database_uri)


@ON_BOTH_DATABASES
def test_a_database_migrated_by_a_newer_release_is_left_as_it_is(
    make_app: Callable[..., Flask],
) -> None:
    """A roll-back's older instances boot on the schema the newer release migrated."""
    app = make_app()
    run_sql(
        app.config["SQLALCHEMY_DATABASE_URI"],
        "UPDATE alembic_version SET version_num = '0099_future'",
    )

    result = init_db(app)

    assert result.exit_code == 0, result.output
    assert "at 0099_future, migrated by a newer release" in result.output
    assert run_sql(
        app.config["SQLALCHEMY_DATABASE_URI"], "SELECT version_num FROM alembic_version"
    ) == [("0099_future",)]


@ON_BOTH_DATABASES
def test_a_database_at_an_unknown_revision_is_refused_clearly(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    run_sql(
        app.config["SQLALCHEMY_DATABASE_URI"],
        "UPDATE alembic_version SET version_num = 'abc123_elsewhere'",
    )

    result = init_db(app)

    assert result.exit_code == 1
    assert "at revision abc123_elsewhere, which this release does not know" in result.output


@ON_BOTH_DATABASES
def test_reset_drops_alembic_s_table_too_and_starts_from_the_first_revision(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()

    result = init_db(app, "--reset", "--yes")

    assert result.exit_code == 0, result.output
    assert f"upgraded from an empty database to {HEAD}" in result.output


def test_three_init_db_at_once_on_an_empty_postgresql_database_migrate_and_seed_once(
    postgresql: LocalPostgreSQL,
) -> None:
    """Instances booting together: the advisory lock lines them up before the schema.

    The test holds the lock while all three start, so they all reach it before any
    touches the schema; then it lets them go at once.
    """
    database_uri = postgresql.create_database()
    holder = create_engine(database_uri)
    waiting_for_the_lock = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND objid = :key AND objsubid = 1"
    )
    with holder.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        init_dbs = [
            subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"],
                cwd=REPOSITORY_ROOT,
                env=flask_environment({"SQLALCHEMY_DATABASE_URI": database_uri}),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(3)
        ]
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while connection.execute(waiting_for_the_lock, {"key": SCHEMA_LOCK_KEY}).scalar() < 3:
            assert time.monotonic() < deadline, "three init-db never all waited for the lock"
            assert all(process.poll() is None for process in init_dbs), "one ran without the lock"
            time.sleep(0.05)
        connection.rollback()  # the polling's snapshot, before looking at the schema
        tables = connection.execute(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        )
        assert tables.scalar() == 0
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
        connection.commit()
    outputs = [process.communicate(timeout=START_TIMEOUT_SECONDS)[0] for process in init_dbs]

    assert [process.returncode for process in init_dbs] == [0, 0, 0], outputs
    assert sum(f"upgraded from an empty database to {HEAD}" in out for out in outputs) == 1
    assert sum(f"at {HEAD}, nothing to upgrade" in out for out in outputs) == 2
    assert sum("Seeded categories: Electronics, Clothing, Books" in out for out in outputs) == 1
    holder.dispose()
    assert stored_categories(database_uri) == [(1, "Electronics"), (2, "Clothing"), (3, "Books")]


def test_the_installed_package_carries_its_migrations(tmp_path: Path) -> None:
    """The deploy pip-installs a wheel, not a checkout: every migration file must be in it."""
    source = tmp_path / "source"
    shutil.copytree(
        REPOSITORY_ROOT, source,
        ignore=shutil.ignore_patterns(".*", "node_modules", "build", "*.egg-info", "__pycache__"),
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheel"), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())

    migrations = REPOSITORY_ROOT / "ecommerce" / "migrations"
    shipped = {
        str(path.relative_to(REPOSITORY_ROOT))
        for path in migrations.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert shipped - packaged == set()
