"""The schema as the app first created it (create_all, up to commit 6ad54cf).

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-27

A database made by create_all before migrations existed is stamped at the revision
whose schema it has (``ecommerce.database``), never built twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Names unique regardless of case; lower() folds ASCII only on SQLite (0003 does better).
    op.create_index("uq_categories_name_lower", "categories", [sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_categories_name_lower", table_name="categories")
    op.drop_table("categories")
