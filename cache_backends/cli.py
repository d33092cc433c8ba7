"""``flask cache ...``: administration commands for the DynamoDB cache.

Registered by the app (``app.cli.add_command(cache_cli)``); they act on every
DynamoDBCache the app's Flask-Caching extensions hold.
"""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup

from cache_backends.dynamodb import DynamoDBCache

cache_cli = AppGroup("cache", help="Administer the DynamoDB cache table.")


def _dynamodb_caches() -> list[DynamoDBCache]:
    """The app's DynamoDB backends (behind a near-cache too); a usage error if none."""
    backends = [
        remote
        for backend in current_app.extensions.get("cache", {}).values()
        if isinstance(remote := getattr(backend, "remote", backend), DynamoDBCache)
    ]
    if not backends:
        raise click.UsageError(
            "the app does not use the DynamoDB cache: set "
            "FLASK_CACHE_TYPE=cache_backends.dynamodb.DynamoDBCache"
        )
    return backends


@cache_cli.command("create-table")
def create_table_command() -> None:
    """Create the cache table (on-demand) and enable TTL; idempotent."""
    for backend in _dynamodb_caches():
        for line in backend.create_table():
            click.echo(line)


@cache_cli.command("status")
def status_command() -> None:
    """Print the table's state and the circuit breaker's, as JSON."""
    for backend in _dynamodb_caches():
        click.echo(json.dumps(backend.health()))


@cache_cli.command("clear")
@click.confirmation_option(prompt="Delete every entry under this cache's key prefix?")
def clear_command() -> None:
    """Delete this cache's entries (those under its key prefix); scans the table."""
    for backend in _dynamodb_caches():
        click.echo(f"cleared {backend.table_name}" if backend.clear() else "clear failed")
