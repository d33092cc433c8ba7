"""Changes are captured by the database: triggers on categories raise the catalogue version.

Revision ID: 0004_catalogue_triggers
Revises: 0003_name_key
Create Date: 2026-12-03

Any INSERT, UPDATE or DELETE of categories, the API's or a person's with psql or
sqlite3, raises the version inside the writer's own transaction: the change and
its version commit or roll back together, and a change made by hand is fenced
like an API write. The repository no longer raises it; it reads what the trigger
wrote. If the version row is missing (init-db creates it, only a hand edit
removes it), the trigger creates it rather than lose the raise.

- PostgreSQL: statement-level triggers (FOR EACH STATEMENT), so a bulk change
  raises the version once; a statement that matched no row (its transition table
  is empty) raises nothing. TRUNCATE raises it too. The function also calls
  ``pg_notify(CATALOGUE_CHANNEL, <new version>)``, which PostgreSQL delivers on
  commit only, so a listener never hears of a change that rolled back.
- SQLite has row-level triggers only (FOR EACH ROW): a statement that changes n
  rows raises the version n times. Still distinct and increasing in commit order,
  which is all the cache's fence needs. SQLite has no notifications (one host,
  nobody to tell) and no TRUNCATE (its DELETE without WHERE fires the triggers).

Rolling out: the previous release still raises the version by hand, so on a
migrated database each of its writes raises it twice; harmless, the order holds.
A later migration that rebuilds categories on SQLite (Alembic's batch mode copies
the table) drops these triggers with the old table: it must create them again.
"""

from __future__ import annotations

from alembic import op

from ecommerce.categories.models import CATALOGUE_CHANNEL, CATALOGUE_VERSION_ROW_ID

revision = "0004_catalogue_triggers"
down_revision = "0003_name_key"
branch_labels = None
depends_on = None

#: The writes that change rows, each captured by a trigger of its own (PostgreSQL adds TRUNCATE).
ROW_EVENTS = ("INSERT", "UPDATE", "DELETE")
POSTGRESQL_FUNCTION = "raise_catalogue_version"

# INSERT OR IGNORE first: a missing row is created (at 0), then raised like any other.
SQLITE_TRIGGER = f"""
CREATE TRIGGER {{name}} AFTER {{event}} ON categories FOR EACH ROW
BEGIN
    INSERT OR IGNORE INTO catalogue_version (id, version) VALUES ({CATALOGUE_VERSION_ROW_ID}, 0);
    UPDATE catalogue_version SET version = version + 1 WHERE id = {CATALOGUE_VERSION_ROW_ID};
END
"""

# The upsert takes the version row's lock until commit, so concurrent writers raise it
# one after the other: distinct versions, increasing in commit order (READ COMMITTED
# re-reads the row once the lock is granted). search_path is pinned to the migration's,
# so a session with another search_path still raises this schema's version.
# changed_rows is the statement's transition table (TRUNCATE has none): an UPDATE or
# DELETE that matched nothing changed nothing, so it raises nothing either. The nested IF
# matters: PL/pgSQL plans a statement when it first runs it, and TRUNCATE must never
# plan a query of changed_rows. OR REPLACE: ``init-db --reset`` drops every table, and
# the triggers with them, but not functions; the next upgrade finds this one there.
POSTGRESQL_FUNCTION_DDL = f"""
CREATE OR REPLACE FUNCTION {POSTGRESQL_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    new_version integer;
BEGIN
    IF TG_OP <> 'TRUNCATE' THEN
        IF NOT EXISTS (SELECT FROM changed_rows) THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO catalogue_version (id, version) VALUES ({CATALOGUE_VERSION_ROW_ID}, 1)
    ON CONFLICT (id) DO UPDATE SET version = catalogue_version.version + 1
    RETURNING version INTO new_version;
    PERFORM pg_notify('{CATALOGUE_CHANNEL}', CAST(new_version AS text));
    RETURN NULL;
END
$$
"""
#: A statement's transition table: the rows it inserted or updated, or those it deleted.
#: TRUNCATE has none (and PostgreSQL allows one per trigger: hence a trigger per event).
POSTGRESQL_TRANSITION_TABLES = {"INSERT": "NEW", "UPDATE": "NEW", "DELETE": "OLD", "TRUNCATE": None}
POSTGRESQL_TRIGGER = f"""
CREATE TRIGGER {{name}} AFTER {{event}} ON categories {{referencing}}
FOR EACH STATEMENT EXECUTE FUNCTION {POSTGRESQL_FUNCTION}()
"""


def trigger_name(event: str) -> str:
    """The trigger that captures ``event``, the same name on every database."""
    return f"categories_{event.lower()}_raises_catalogue_version"


def _on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _on_postgresql():
        op.execute(POSTGRESQL_FUNCTION_DDL)
        for event, transition in POSTGRESQL_TRANSITION_TABLES.items():
            referencing = f"REFERENCING {transition} TABLE AS changed_rows" if transition else ""
            trigger = POSTGRESQL_TRIGGER.format(
                name=trigger_name(event), event=event, referencing=referencing
            )
            op.execute(trigger)
    else:
        for event in ROW_EVENTS:
            op.execute(SQLITE_TRIGGER.format(name=trigger_name(event), event=event))


def downgrade() -> None:
    if _on_postgresql():
        # Each trigger by name, then the function without CASCADE: a trigger this
        # migration did not make would stop the downgrade rather than vanish with it.
        for event in POSTGRESQL_TRANSITION_TABLES:
            op.execute(f"DROP TRIGGER {trigger_name(event)} ON categories")
        op.execute(f"DROP FUNCTION {POSTGRESQL_FUNCTION}()")
    else:
        for event in ROW_EVENTS:
            op.execute(f"DROP TRIGGER {trigger_name(event)}")
