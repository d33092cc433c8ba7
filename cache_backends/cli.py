"""``flask cache ...``: administration commands for the DynamoDB cache.

Registered by the app (``app.cli.add_command(cache_cli)``); they act on every
DynamoDBCache the app's Flask-Caching extensions hold. Scripts and SSM Run
Command can rely on them: results on stdout, one line each (the app's log
lines go to stderr, see wsgi.py); exit status 0 only when the command did what
it says, and never a question when given ``--yes``.
"""

from __future__ import annotations

import json
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from cache_backends.dynamodb.backend import DynamoDBCache
from cache_backends.dynamodb.transport import DYNAMODB_ERRORS

cache_cli = AppGroup("cache", help="Administer the DynamoDB cache table.")

#: DynamoDB serves reads and writes in these states; CREATING and DELETING refuse them.
USABLE_TABLE_STATUSES = frozenset({"ACTIVE", "UPDATING"})
#: ``cache status``'s exit status when a table is not usable (missing, unreachable).
TABLE_NOT_USABLE = 1


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
        try:
            done = backend.create_table()
        except DYNAMODB_ERRORS as error:
            raise click.ClickException(f"table {backend.table_name}: {error}") from error
        for line in done:
            click.echo(line)


def _usable(report: dict[str, Any]) -> bool:
    return report["ok"] and report.get("table_status") in USABLE_TABLE_STATUSES


@cache_cli.command("status")
@click.pass_context
def status_command(context: click.Context) -> None:
    """Print the table's state and the circuit breaker's, as JSON.

    Exit status 0 only when the table is usable (ACTIVE or UPDATING); 1 when it is
    missing, still being created, or DynamoDB does not answer.
    """
    reports = [backend.health() for backend in _dynamodb_caches()]
    for report in reports:
        click.echo(json.dumps(report))
    if not all(_usable(report) for report in reports):
        context.exit(TABLE_NOT_USABLE)


def confirmed(question: str) -> bool:
    """The operator's answer; no when nobody can answer (stdin closed, Ctrl-C)."""
    try:
        return click.confirm(question, err=True)  # stdout is for results
    except click.Abort:
        click.echo(err=True)  # end the question's line
        return False


@cache_cli.command("clear")
@click.option(
    "--yes",
    is_flag=True,
    help="Do not ask for confirmation: scripts and SSM Run Command cannot answer.",
)
def clear_command(yes: bool) -> None:
    """Delete this cache's entries (those under its key prefix); scans the table.

    Asks for confirmation first; --yes skips the question.
    """
    if not yes and not confirmed("Delete every entry under this cache's key prefix?"):
        raise click.ClickException(
            "nothing cleared: not confirmed (pass --yes to skip the question)"
        )
    for backend in _dynamodb_caches():
        if not backend.clear():
            raise click.ClickException(f"clear failed on {backend.table_name}: see the log above")
        click.echo(f"cleared {backend.table_name}")
