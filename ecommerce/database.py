"""The schema and the seed data: ``flask --app wsgi init-db``.

The schema is Alembic's migrations (``ecommerce/migrations``, through
Flask-Migrate, which also adds ``flask db upgrade|downgrade|current|history``).
init-db brings any database to the newest revision and then seeds it: an empty
one, one at an older revision, and one that create_all made before migrations
existed, which is stamped at the revision whose schema it has first. Instances
booting together are safe on PostgreSQL: the upgrade and the seeding run under
an advisory lock, so one migrates and the others then find nothing to do.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import click
from alembic import command
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SAWarning

from ecommerce.categories import repository
from ecommerce.categories.cache_policy import after_categories_changed, categories_region
from ecommerce.extensions import MIGRATIONS_DIRECTORY, db

SEED_CATEGORY_NAMES = ("Electronics", "Clothing", "Books")
#: pg_advisory_lock's key for "the schema is being changed": any constant the app owns.
SCHEMA_LOCK_KEY = 0x6563_6F6D  # "ecom"


class SchemaUpgradeRefused(Exception):
    """A migration found data it must not change on its own; the message says what to do."""


@functools.cache
def schema_head() -> str:
    """The newest revision of this release's schema; fixed for the life of the process."""
    head = ScriptDirectory(str(MIGRATIONS_DIRECTORY)).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIRECTORY}"
    return head


def _revision_number(revision: str) -> int | None:
    """The number our revisions start with (``0004`` of ``0004_catalogue_triggers``)."""
    prefix = revision.partition("_")[0]
    return int(prefix) if prefix.isdigit() else None


def is_newer_schema(revision: str | None) -> bool:
    """Whether ``revision`` is a later release's: unknown here and numbered after our head.

    Every migration keeps the previous release working ("expand, then contract",
    docs/deploy.md section 7), so this release serves such a schema: that is what lets
    a rolling update proceed and roll back after its first instance migrated. A
    revision that is unknown and not numbered after the head (another app's, or a
    branch never released) is not served.
    """
    if revision is None or revision in _known_revisions():
        return False
    number, head_number = _revision_number(revision), _revision_number(schema_head())
    return number is not None and head_number is not None and number > head_number


@functools.cache
def _known_revisions() -> frozenset[str]:
    script = ScriptDirectory(str(MIGRATIONS_DIRECTORY))
    return frozenset(revision.revision for revision in script.walk_revisions())


def _revision_of_a_database_made_before_migrations(connection: Connection) -> str | None:
    """The revision whose schema create_all gave an untracked database; None if it is empty."""
    tables = set(inspect(connection).get_table_names())
    if "categories" not in tables:
        return None
    columns = {column["name"] for column in inspect(connection).get_columns("categories")}
    if "name_key" in columns:
        return "0003_name_key"
    if "catalogue_version" in tables:
        return "0002_catalogue_version"
    return "0001_initial"


@contextmanager
def _schema_lock(connection: Connection) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock on the schema for the block (other databases: no lock).

    A session lock, not a transaction's: it outlives the upgrade's commit and
    covers the seeding, which runs on the app's own session. SQLite serves one
    host; run one init-db at a time there.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    # No DATABASE_STATEMENT_TIMEOUT_MS here: waiting for another instance's migration,
    # or running a long one, is this connection's job.
    connection.execute(text("SET statement_timeout = 0"))
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()  # a failed upgrade left its transaction open: end it first
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
        connection.execute(text("RESET statement_timeout"))  # back to the pool as it came
        connection.commit()


def _upgrade(connection: Connection) -> None:
    """Bring the schema to the newest revision, in one transaction where the database allows."""
    config = current_app.extensions["migrate"].migrate.get_config()
    config.attributes["connection"] = connection
    head = schema_head()
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None and (adopted := _revision_of_a_database_made_before_migrations(connection)):
        command.stamp(config, adopted)
        click.echo(f"Schema: made before migrations, matches revision {adopted}")
        current = adopted
    if current == head:
        connection.commit()  # the stamp, if any
        click.echo(f"Schema: at {head}, nothing to upgrade")
        return
    if is_newer_schema(current):
        click.echo(
            f"Schema: at {current}, migrated by a newer release than this one ({head}); "
            "this release runs on it unchanged (migrations keep the previous release working)"
        )
        return
    try:
        command.upgrade(config, "head")
    except CommandError as error:  # a revision this release does not know, not numbered after ours
        raise click.ClickException(
            f"the database is at revision {current}, which this release does not know and "
            f"which is not numbered after its own ({head}): run the release that made it, or "
            f"downgrade the database with that release (flask --app wsgi db downgrade "
            f"<revision>). Alembic: {error}"
        ) from error
    connection.commit()
    click.echo(f"Schema: upgraded from {current or 'an empty database'} to {head}")


def _drop_every_table(connection: Connection) -> None:
    """Every table in the database, the app's and Alembic's: what the schema is made of."""
    tables = MetaData()
    # SQLite cannot reflect the lower(name) index; dropping its table drops it anyway.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        tables.reflect(connection)
    tables.drop_all(connection)
    connection.commit()


def _seed() -> None:
    if repository.ensure_catalogue_version():
        # Versions start again at 0: whatever the cache holds was fenced by another
        # database's versions and could refuse this one's lists until it expires.
        categories_region().forget()
        click.echo("Created the catalogue version row; dropped any cached category list")
    added, version = repository.add_missing_categories(SEED_CATEGORY_NAMES)
    if version is not None:
        # A cache filled from an older database must not hide them.
        after_categories_changed(version)
        click.echo(f"Seeded categories: {', '.join(added)}")
    else:
        click.echo("Seed categories: present, nothing added")


@click.command("init-db")
@click.option(
    "--reset",
    is_flag=True,
    help="Drop every table of the database first (all categories are lost), then start "
    "again from the seed data: for a local database, e.g. to replay the tutorial's story.",
)
@click.option("--yes", is_flag=True, help="With --reset: do not ask for confirmation.")
@with_appcontext
def init_db_command(reset: bool, yes: bool) -> None:
    """Upgrade the schema to this release's, then add the seed categories; safe to run again."""
    url = db.engine.url.render_as_string(hide_password=True)
    click.echo(f"Database: {url}")
    if reset and not yes:
        try:  # "no", a closed stdin and Ctrl-C all abort
            click.confirm(f"Drop every category in {url}?", err=True, abort=True)
        except click.Abort:
            refusal = "nothing reset: not confirmed (pass --yes to skip the question)"
            raise click.ClickException(refusal) from None
    with db.engine.connect() as connection, _schema_lock(connection):
        if reset:
            _drop_every_table(connection)
            click.echo("Dropped the tables")
        try:
            _upgrade(connection)
        except SchemaUpgradeRefused as refusal:
            raise click.ClickException(
                f"schema not upgraded, no category changed: {refusal}"
            ) from None
        _seed()
