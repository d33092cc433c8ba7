"""SQL for categories: the one module that queries the categories table."""

from __future__ import annotations

import time
from collections.abc import Iterable

from flask import current_app
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError

from ecommerce.categories.models import Category
from ecommerce.extensions import db

MILLISECONDS_PER_SECOND = 1000


class DuplicateCategoryNameError(Exception):
    """A category with this name (ignoring letter case) already exists."""


def _simulate_slow_database() -> None:
    """Sleep DB_LATENCY_MS: the slow database whose cost the cache exists to hide."""
    latency_ms = current_app.config["DB_LATENCY_MS"]
    if latency_ms:
        time.sleep(latency_ms / MILLISECONDS_PER_SECOND)


def list_categories() -> list[Category]:
    """Every category in id order, as slow as DB_LATENCY_MS makes it."""
    _simulate_slow_database()
    return list(db.session.scalars(select(Category).order_by(Category.id)))


def get_category(category_id: int) -> Category | None:
    return db.session.get(Category, category_id)


def name_exists(name: str) -> bool:
    """Whether ``name`` is taken, compared with the same lower() as the unique index."""
    query = select(exists().where(func.lower(Category.name) == func.lower(name)))
    return bool(db.session.scalar(query))


def create_category(name: str) -> Category:
    """Insert and commit ``name`` (already trimmed and validated by the caller).

    Raises DuplicateCategoryNameError when the name is taken, whether the check
    sees it or a concurrent insert wins the race and the unique index refuses ours.
    """
    if name_exists(name):
        raise DuplicateCategoryNameError(name)
    category = Category(name=name)
    db.session.add(category)
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise DuplicateCategoryNameError(name) from error
    return category


def add_missing_categories(names: Iterable[str]) -> list[str]:
    """Insert the names not present yet, in one transaction; return those added."""
    added = [name for name in names if not name_exists(name)]
    db.session.add_all(Category(name=name) for name in added)
    db.session.commit()
    return added
