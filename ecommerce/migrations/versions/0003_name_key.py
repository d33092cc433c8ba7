"""Names unique by their casefolded key: the name_key column and its unique index.

Revision ID: 0003_name_key
Revises: 0002_catalogue_version
Create Date: 2026-11-27

Existing rows keep their ids and names and get the key of their name. Rows whose
names share a key (say "Books" and its fullwidth twin) stop the upgrade
before anything changes, named: which one to keep is a person's decision.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from ecommerce.categories.names import name_key
from ecommerce.database import SchemaUpgradeRefused

revision = "0003_name_key"
down_revision = "0002_catalogue_version"
branch_labels = None
depends_on = None

categories = sa.table(
    "categories", sa.column("id", sa.Integer), sa.column("name"), sa.column("name_key")
)


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(categories.c.id, categories.c.name)).all()
    names_by_key: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        names_by_key[name_key(row.name)].append(row.name)
    clashes = [names for names in names_by_key.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" = ".join(repr(name) for name in names) for names in clashes)
        raise SchemaUpgradeRefused(
            f"category names that become the same under the new uniqueness rule: {listed}. "
            "Rename or delete all but one of each group, then run init-db again"
        )
    # SQLite adds a NOT NULL column only with a default; the app always sets the key.
    op.add_column("categories", sa.Column("name_key", sa.Text(), nullable=False, server_default=""))
    for row in rows:
        connection.execute(
            categories.update().where(categories.c.id == row.id).values(name_key=name_key(row.name))
        )
    op.create_index("uq_categories_name_key", "categories", ["name_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_categories_name_key", table_name="categories")
    op.drop_column("categories", "name_key")
