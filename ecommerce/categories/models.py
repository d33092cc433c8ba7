"""The Category table."""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy import Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from ecommerce.extensions import db

#: Longer names are refused with 400 before they reach the database.
NAME_MAX_LENGTH = 100
#: The largest id every supported database's INTEGER holds (PostgreSQL's is 32-bit).
MAX_CATEGORY_ID = 2**31 - 1


class CategoryDict(TypedDict):
    """A category as the API returns it and as the cache stores it."""

    id: int
    name: str


class Category(db.Model):
    """A product category; its name is unique regardless of letter case."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))

    def to_dict(self) -> CategoryDict:
        return {"id": self.id, "name": self.name}


class CatalogueVersion(db.Model):
    """One row: a number every category write raises in the same transaction.

    A list read together with it (one statement, one snapshot) says how new
    the list is, so the cache can refuse to replace a newer list with an older
    one (``cache_backends.versioned``).
    """

    __tablename__ = "catalogue_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(default=0)


#: The primary key of the single CatalogueVersion row.
CATALOGUE_VERSION_ROW_ID = 1


# The real guard against two concurrent POSTs of "Toys" and "toys": the existence
# check in the repository only gives the common case a clean 409 without an
# insert. SQLite's lower() folds ASCII only, and so does the check that uses it.
Index("uq_categories_name_lower", func.lower(Category.name), unique=True)
