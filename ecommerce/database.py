"""Schema creation and seed data: the ``flask --app wsgi init-db`` command."""

from __future__ import annotations

import warnings
from collections import defaultdict

import click
from flask.cli import with_appcontext
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import SAWarning

from cache_backends.cli import confirmed
from ecommerce.categories import repository
from ecommerce.categories.cache_policy import after_categories_changed, forget_cached_categories
from ecommerce.categories.models import NAME_KEY_INDEX, Category
from ecommerce.categories.names import name_key
from ecommerce.extensions import db

SEED_CATEGORY_NAMES = ("Electronics", "Clothing", "Books")


def _add_name_keys() -> bool:
    """Give a categories table made before name keys existed its key column and index.

    Existing rows keep their ids and names. Rows whose names become the same
    key (say "Books" and its fullwidth twin) stop the upgrade, named, before
    anything changes: which one to keep is a person's decision, not this command's.
    Create-all made new databases whole; this runs only on older ones.
    """
    with db.engine.begin() as connection:
        inspector = inspect(connection)
        columns = {column["name"] for column in inspector.get_columns(Category.__tablename__)}
        with warnings.catch_warnings():  # lower(name)'s index: SQLite cannot reflect it
            warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
            indexes = {index["name"] for index in inspector.get_indexes(Category.__tablename__)}
        if "name_key" in columns and NAME_KEY_INDEX.name in indexes:
            return False
        rows = connection.execute(select(Category.id, Category.name)).all()
        by_key: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            by_key[name_key(row.name)].append(row.name)
        clashes = [names for names in by_key.values() if len(names) > 1]
        if clashes:
            listed = "; ".join(" = ".join(repr(name) for name in names) for names in clashes)
            raise click.ClickException(
                f"cannot make category names unique by casefolded key: {listed}. Rename or "
                "delete all but one of each group, then run init-db again; nothing was changed"
            )
        if "name_key" not in columns:
            # A default, because SQLite adds a NOT NULL column only with one.
            connection.execute(
                text("ALTER TABLE categories ADD COLUMN name_key TEXT NOT NULL DEFAULT ''")
            )
        for row in rows:
            connection.execute(
                update(Category).where(Category.id == row.id).values(name_key=name_key(row.name))
            )
        NAME_KEY_INDEX.create(connection)
    return True


@click.command("init-db")
@click.option(
    "--reset",
    is_flag=True,
    help="Drop every table of the app first (all categories are lost), then start again "
    "from the seed data: for a local database, e.g. to replay the README's story.",
)
@click.option("--yes", is_flag=True, help="With --reset: do not ask for confirmation.")
@with_appcontext
def init_db_command(reset: bool, yes: bool) -> None:
    """Create the tables and the seed categories; running it again changes nothing."""
    url = db.engine.url.render_as_string(hide_password=True)
    click.echo(f"Database: {url}")
    if reset:
        if not yes and not confirmed(f"Drop every category in {url}?"):
            raise click.ClickException(
                "nothing reset: not confirmed (pass --yes to skip the question)"
            )
        db.drop_all()
        click.echo("Dropped the tables")
    existing_tables = set(inspect(db.engine).get_table_names())
    db.create_all()
    created_tables = sorted(set(db.metadata.tables) - existing_tables)
    if created_tables:
        click.echo(f"Created tables: {', '.join(created_tables)}")
    else:
        click.echo("Tables: present, nothing created")
    if _add_name_keys():
        click.echo("Added name keys to existing categories (unique by casefolded name)")

    if repository.ensure_catalogue_version():
        # Versions start again at 0: whatever the cache holds was fenced by another
        # database's versions and could refuse this one's lists until it expires.
        forget_cached_categories()
        click.echo("Created the catalogue version row; dropped any cached category list")
    added, version = repository.add_missing_categories(SEED_CATEGORY_NAMES)
    if version is not None:
        # A cache filled from an older database must not hide them.
        after_categories_changed(version)
        click.echo(f"Seeded categories: {', '.join(added)}")
    else:
        click.echo("Seed categories: present, nothing added")
