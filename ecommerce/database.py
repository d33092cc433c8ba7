"""Schema creation and seed data: the ``flask --app wsgi init-db`` command."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import inspect

from ecommerce.categories import repository
from ecommerce.categories.cache_policy import after_categories_changed, forget_cached_categories
from ecommerce.extensions import db

SEED_CATEGORY_NAMES = ("Electronics", "Clothing", "Books")


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the tables and the seed categories; running it again changes nothing."""
    click.echo(f"Database: {db.engine.url.render_as_string(hide_password=True)}")
    existing_tables = set(inspect(db.engine).get_table_names())
    db.create_all()
    created_tables = sorted(set(db.metadata.tables) - existing_tables)
    if created_tables:
        click.echo(f"Created tables: {', '.join(created_tables)}")
    else:
        click.echo("Tables: present, nothing created")

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
