"""Alembic's environment: the app's metadata on the app's engine, or on init-db's connection.

``flask --app wsgi init-db`` passes the connection that holds its schema lock in
``config.attributes["connection"]`` and commits the upgrade itself; ``flask db ...``
(Flask-Migrate) connects through the app's engine and commits here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ecommerce.extensions import db


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=db.metadata)
    # On a connection already in a transaction (init-db's) this joins it: the caller commits.
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit(
        "offline migrations (--sql) are not supported: the name-key migration computes "
        "each row's key in Python"
    )
shared_connection = context.config.attributes.get("connection")
if shared_connection is not None:
    run_migrations(shared_connection)
else:
    with db.engine.connect() as own_connection:
        run_migrations(own_connection)
