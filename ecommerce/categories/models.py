"""The Category table."""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy import Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from ecommerce.categories.names import NAME_MAX_LENGTH, name_key
from ecommerce.extensions import db

#: The largest id every supported database's INTEGER holds (PostgreSQL's is 32-bit).
MAX_CATEGORY_ID = 2**31 - 1


class CategoryDict(TypedDict):
    """A category as the API returns it and as the cache stores it."""

    id: int
    name: str


class Category(db.Model):
    """A product category; its name is unique by its casefolded key (names.py)."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    #: name_key(name): what uniqueness compares. Text: folding may lengthen a name.
    name_key: Mapped[str] = mapped_column(Text)

    def __init__(self, *, name: str) -> None:
        super().__init__(name=name, name_key=name_key(name))

    def rename(self, name: str) -> None:
        self.name, self.name_key = name, name_key(name)

    def to_dict(self) -> CategoryDict:
        return {"id": self.id, "name": self.name}


class CatalogueVersion(db.Model):
    """One row: a number every category write raises in the same transaction.

    A list read together with it (one statement, one snapshot) says how new
    the list is, so the cache can refuse to replace a newer list with an older
    one (``cache_backends.versioned``). The database raises it, by triggers on
    categories (migration 0004_catalogue_triggers), so a change made with plain
    SQL is versioned like an API write; the triggers also create the row if it
    is missing.
    """

    __tablename__ = "catalogue_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(default=0)


#: The primary key of the single CatalogueVersion row.
CATALOGUE_VERSION_ROW_ID = 1
#: The PostgreSQL channel on which the triggers' ``pg_notify`` announces each new
#: version (the payload: the version as text), delivered when the change commits.
#: Migration 0004 writes it into the trigger function: changing it takes a migration.
CATALOGUE_CHANNEL = "catalogue_changed"


# The real guard against two concurrent POSTs of "Toys" and its fullwidth twin: the existence
# check in the repository only gives the common case a clean 409 without an insert.
NAME_KEY_INDEX = Index("uq_categories_name_key", Category.name_key, unique=True)
# The first guard (migration 0001; lower() folds ASCII only in SQLite), kept: every pair
# it refuses name_key refuses too, so dropping it would be a migration for nothing.
Index("uq_categories_name_lower", func.lower(Category.name), unique=True)
