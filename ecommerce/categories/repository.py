"""SQL for categories: the one module that queries the categories tables.

Every write raises the catalogue version in its own transaction and returns
the new version; the list is read together with the version in one statement,
so the pair always describes one snapshot of the database (on PostgreSQL's
READ COMMITTED too, where two statements of one transaction may not).

The database raises the version, not this module: triggers on categories
(migration 0004_catalogue_triggers) run inside the writer's transaction, so a
change made with plain SQL is versioned too. A write flushes its statement and
then reads the version its trigger left, in the same transaction. The trigger's
UPDATE of the version row holds the write lock (SQLite) or the row lock
(PostgreSQL) until commit, so concurrent writers still get distinct versions,
increasing in commit order. On SQLite a statement raises it once per row it
changes, on PostgreSQL once per statement: callers may rely on "higher", never
on "one more".
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flask import current_app
from sqlalchemy import delete, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import flag_modified
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
#: The one-row read of the version (a statement is immutable: one serves every call).
CATALOGUE_VERSION_QUERY = select(CatalogueVersion.version).where(
    CatalogueVersion.id == CATALOGUE_VERSION_ROW_ID
)


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
    else:  # no version row (init-db creates it, so does the next write's trigger): version 0
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


def current_catalogue_version() -> int:
    """The committed catalogue version now (0 if the row is missing): for the reconciler.

    On a connection of its own, not the session: it is the database's state,
    never a caller's uncommitted write, and it leaves no transaction open behind
    it (a reconciler that polls must not sit idle in a transaction on PostgreSQL).
    """
    with db.engine.connect() as connection:
        return connection.scalar(CATALOGUE_VERSION_QUERY) or 0


def _version_written_by_the_trigger() -> int:
    """Flush the pending write; the version its trigger raised, read in its transaction.

    The flush sends the INSERT, UPDATE or DELETE, whose trigger raises the version
    (creating the row if it was missing); the lock it takes is held to commit, so
    nobody else's raise can come between it and this read.
    """
    db.session.flush()
    version = db.session.scalar(CATALOGUE_VERSION_QUERY)
    if version is None:  # the trigger always leaves the row: the schema lacks it
        db.session.rollback()  # an unversioned write would escape the cache's fence
        raise RuntimeError(
            "no catalogue version after a write: the database lacks migration "
            "0004_catalogue_triggers (run flask --app wsgi init-db)"
        )
    return version


def _commit_with_version(category: Category) -> tuple[CategoryDict, int]:
    """Commit the pending insert or rename; what was written and the version its trigger raised.

    The dict is taken before the commit (which expires the object), so a
    concurrent DELETE after it cannot turn the reply into an ObjectDeletedError.
    A unique-index refusal becomes DuplicateCategoryNameError; a rename whose
    row a concurrent DELETE removed first (the UPDATE matches nothing) becomes
    CategoryNotFoundError.
    """
    name, category_id = category.name, category.id
    try:
        version = _version_written_by_the_trigger()
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
    # A rename to the name it has is still a write that raises the version (and meets a
    # concurrent DELETE as a 404): the ORM would skip an UPDATE that changes no value,
    # and with it the trigger.
    flag_modified(category, "name")
    return _commit_with_version(category)


def delete_category(category_id: int) -> int:
    """Delete a category; the new version.

    One DELETE whose row count decides, so of two concurrent deletes (or a
    delete racing a rename's) exactly one succeeds and the other raises
    CategoryNotFoundError and rolls back, so the version stays as it was.
    """
    if not 0 < category_id <= MAX_CATEGORY_ID:
        raise CategoryNotFoundError(category_id)
    deleted = db.session.execute(delete(Category).where(Category.id == category_id))
    if deleted.rowcount == 0:
        db.session.rollback()
        raise CategoryNotFoundError(category_id)
    version = _version_written_by_the_trigger()
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
    """Insert the names not present yet, in one transaction; those added and the new version.

    One INSERT per name, so the version raised is the same on every database
    (one per row on SQLite, one per statement on PostgreSQL): seeding an empty
    database leaves it at the number of seed names.
    """
    added = [name for name in names if stored_name_like(name) is None]
    if not added:
        return [], None
    for name in added:
        db.session.add(Category(name=name))
        db.session.flush()
    version = _version_written_by_the_trigger()
    db.session.commit()
    return added, version
