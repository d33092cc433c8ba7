"""Catalogues of any size for the scale benchmark, and the bytes the app must send for them.

A SQLite file per size, made once (init-db, then one bulk insert), copied into every
contender's database file before it starts, so that every contender lists the same
ids and names; :func:`catalogue_representation` builds the body as the app does, what
the run checks every contender's answer against and what nginx serves.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from devtools.fleet import prepare
from ecommerce.categories.names import name_key
from ecommerce.categories.representation import Representation
from ecommerce.database import SEED_CATEGORY_NAMES

#: The generated categories' names: "Category 000004" makes ~37 bytes per category
#: in the body, the size per category of the issue's table (369 KB at 10,000).
GENERATED_NAME_FORMAT = "Category {:06d}"
#: The bulk insert: the triggers raise the catalogue version once per row on SQLite.
INSERT_CATEGORY = "INSERT INTO categories (name, name_key) VALUES (?, ?)"
LIST_CATEGORIES = "SELECT id, name FROM categories ORDER BY id"


def build_catalogue(workdir: Path, categories: int) -> Path:
    """A SQLite file at the newest schema holding ``categories`` categories, seeds first.

    init-db makes the schema and the seed categories; one executemany adds the rest
    in one transaction (200,000 rows in a few seconds, where 200,000 POSTs would take
    an hour). Contenders get copies of it, so every one lists the same ids and names.
    """
    path = workdir / f"catalogue-{categories}.sqlite"
    prepare({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "LOG_LEVEL": "WARNING"}, quiet=True)
    first_generated = len(SEED_CATEGORY_NAMES) + 1
    names = (
        GENERATED_NAME_FORMAT.format(number) for number in range(first_generated, categories + 1)
    )
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.executemany(INSERT_CATEGORY, ((name, name_key(name)) for name in names))
    return path


def catalogue_representation(path: Path) -> Representation:
    """The list's representation as the app builds it: the bytes every contender must send."""
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(LIST_CATEGORIES).fetchall()
    return Representation.of([{"id": category_id, "name": name} for category_id, name in rows])


def copying_catalogue(catalogue: Path) -> Callable[[Mapping[str, Any]], None]:
    """``servers.serving``'s ``prepare_database``: the catalogue becomes the contender's file."""

    def copy_into(settings: Mapping[str, Any]) -> None:
        database = make_url(settings["SQLALCHEMY_DATABASE_URI"]).database
        if database is None:
            raise ValueError(f"no database file in {settings['SQLALCHEMY_DATABASE_URI']}")
        shutil.copyfile(catalogue, database)

    return copy_into
