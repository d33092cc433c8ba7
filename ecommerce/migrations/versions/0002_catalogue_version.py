"""The catalogue version: one row that every category write raises in its transaction.

Revision ID: 0002_catalogue_version
Revises: 0001_initial
Create Date: 2026-11-27

The cache fences its writes with it (a list never replaces a newer one). The row
itself is created by init-db, which also drops the cached list when it does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_catalogue_version"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalogue_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("catalogue_version")
