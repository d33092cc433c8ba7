"""SQL for categories: the one module that queries the categories tables.

Every write raises the catalogue version in its own transaction and returns
the new version; the list is read together with the version in one statement,
so the pair always describes one snapshot of the database (on PostgreSQL's
READ COMMITTED too, where two statements of one transaction may not).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flask import current_app
from sqlalchemy import delete, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from ecommerce.categories.models import (
    CATALOGUE_VERSION_ROW_ID,
    MAX_CATEGORY_ID,
    CatalogueVersion,
    Category,
    CategoryDict,
)
from ecommerce.categories.names import name_key
from ecommerce.extensions import db

MILLISECONDS_PER_SECOND = 1000


class DuplicateCategoryNameError(Exception):
    """A category with this name's key (names.py) already exists, named ``stored_name``."""

    def __init__(self, stored_name: str) -> None:
        super().__init__(stored_name)
        self.stored_name = stored_name


class CategoryNotFoundError(Exception):
    """No category has this id."""


def _simulate_slow_database() -> None:
    """Sleep DB_LATENCY_MS: the slow database whose cost the cache exists to hide."""
    latency_ms = current_app.config["DB_LATENCY_MS"]
    if latency_ms:
        time.sleep(latency_ms / MILLISECONDS_PER_SECOND)


def list_categories_at_version() -> tuple[list[CategoryDict], int]:
    """Every category in id order and the catalogue version they are the state of.

    One statement, so one snapshot on any database. It reads first and then
    waits DB_LATENCY_MS: a slow query returns the database as of its start, so
    a write that commits meanwhile is not in the result (sleeping before the
    read would hide exactly that race from the tests).
    """
    rows = db.session.execute(
        select(CatalogueVersion.version, Category.id, Category.name)
        .select_from(CatalogueVersion)
        .outerjoin(Category, true())
        .where(CatalogueVersion.id == CATALOGUE_VERSION_ROW_ID)
        .order_by(Category.id)
    ).all()
    if rows:
        version = rows[0].version
        categories = [CategoryDict(id=row.id, name=row.name) for row in rows if row.id is not None]
    else:  # no version row (init-db creates it; only a hand edit removes it): version 0
        version = 0
        every_category = select(Category).order_by(Category.id)
        categories = [category.to_dict() for category in db.session.scalars(every_category)]
    _simulate_slow_database()
    return categories, version


def get_category(category_id: int) -> Category | None:
    """The category, or None; ids no database INTEGER holds are absent, not an overflow."""
    if not 0 < category_id <= MAX_CATEGORY_ID:
        return None
    return db.session.get(Category, category_id)


def stored_name_like(name: str, *, except_id: int | None = None) -> str | None:
    """The stored name with ``name``'s key (the same category to a reader), or None."""
    query = select(Category.name).where(Category.name_key == name_key(name))
    if except_id is not None:
        query = query.where(Category.id != except_id)
    return db.session.scalar(query.limit(1))


def _refuse_if_taken(name: str, *, except_id: int | None = None) -> None:
    stored = stored_name_like(name, except_id=except_id)
    if stored is not None:
        raise DuplicateCategoryNameError(stored)


def _bump_version() -> int:
    """Raise the catalogue version inside the caller's transaction; the new version.

    The UPDATE takes the write lock (SQLite) or the row lock (PostgreSQL), so
    concurrent writers get distinct, increasing versions in commit order.
    """
    bumped = db.session.execute(
        update(CatalogueVersion)
        .where(CatalogueVersion.id == CATALOGUE_VERSION_ROW_ID)
        .values(version=CatalogueVersion.version + 1)
    )
    if bumped.rowcount == 0:
        db.session.add(CatalogueVersion(id=CATALOGUE_VERSION_ROW_ID, version=1))
        db.session.flush()
    return db.session.scalar(
        select(CatalogueVersion.version).where(CatalogueVersion.id == CATALOGUE_VERSION_ROW_ID)
    )


def _commit_with_version(category: Category) -> tuple[CategoryDict, int]:
    """Bump the version and commit the pending insert or rename; what was written and the version.

    The dict is taken before the commit (which expires the object), so a
    concurrent DELETE after it cannot turn the reply into an ObjectDeletedError.
    A unique-index refusal becomes DuplicateCategoryNameError; a rename whose
    row a concurrent DELETE removed first (the UPDATE matches nothing) becomes
    CategoryNotFoundError.
    """
    name, category_id = category.name, category.id
    try:
        version = _bump_version()  # autoflush sends the INSERT or UPDATE first
        written = category.to_dict()
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        # A concurrent writer committed the name after our check: name what it stored.
        raise DuplicateCategoryNameError(stored_name_like(name) or name) from error
    except StaleDataError as error:
        db.session.rollback()
        raise CategoryNotFoundError(category_id) from error
    return written, version


def create_category(name: str) -> tuple[CategoryDict, int]:
    """Insert ``name`` (already trimmed and validated); the category and the new version.

    Raises DuplicateCategoryNameError when the name is taken, whether the check
    sees it or a concurrent insert wins the race and the unique index refuses ours.
    """
    _refuse_if_taken(name)
    category = Category(name=name)
    db.session.add(category)
    return _commit_with_version(category)


def rename_category(category_id: int, name: str) -> tuple[CategoryDict, int]:
    """Rename a category; the category and the new version.

    Raises CategoryNotFoundError (also when a concurrent DELETE wins), or
    DuplicateCategoryNameError when another category has the name (a category
    may change the case of its own name).
    """
    category = get_category(category_id)
    if category is None:
        raise CategoryNotFoundError(category_id)
    _refuse_if_taken(name, except_id=category_id)
    category.rename(name)
    return _commit_with_version(category)


def delete_category(category_id: int) -> int:
    """Delete a category; the new version.

    One DELETE whose row count decides, so of two concurrent deletes (or a
    delete racing a rename's) exactly one succeeds and the other raises
    CategoryNotFoundError without bumping the version.
    """
    if not 0 < category_id <= MAX_CATEGORY_ID:
        raise CategoryNotFoundError(category_id)
    deleted = db.session.execute(delete(Category).where(Category.id == category_id))
    if deleted.rowcount == 0:
        db.session.rollback()
        raise CategoryNotFoundError(category_id)
    version = _bump_version()
    db.session.commit()
    return version


def ensure_catalogue_version() -> bool:
    """Create the version row if it is missing (init-db); True if created."""
    if db.session.get(CatalogueVersion, CATALOGUE_VERSION_ROW_ID) is not None:
        return False
    db.session.add(CatalogueVersion(id=CATALOGUE_VERSION_ROW_ID, version=0))
    db.session.commit()
    return True


def add_missing_categories(names: Iterable[str]) -> tuple[list[str], int | None]:
    """Insert the names not present yet, in one transaction; those added and the new version."""
    added = [name for name in names if stored_name_like(name) is None]
    if not added:
        return [], None
    db.session.add_all(Category(name=name) for name in added)
    version = _bump_version()
    db.session.commit()
    return added, version
