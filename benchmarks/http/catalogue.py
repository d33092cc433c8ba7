"""Catalogues of any size for the scale benchmark, and the bytes the app must send for them.

A SQLite file per size, made once (init-db, then one bulk insert), copied into every
contender's database file before it starts, so that every contender lists the same
ids and names; :func:`catalogue_representation` builds the body as the app does, what
the run checks every contender's answer against and what nginx serves.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from devtools.fleet import prepare
from ecommerce.categories.names import name_key
from ecommerce.categories.representation import Representation
from ecommerce.database import SEED_CATEGORY_NAMES

#: The generated categories' names: "Category 000004" makes ~37 bytes per category
#: in the body, the size per category of the issue's table (369 KB at 10,000).
GENERATED_NAME_FORMAT = "Category {:06d}"
#: Words of real shop catalogues. Names of two to four of them compress about as real
#: names do (10,000 of them: ~80 KB stored, 20 read units), where "Category 000123"
#: compresses to 4 KB and hides what grows with the catalogue (read units above all).
_WORDS = """
    vintage leather hiking boots garden tools kitchen knives organic coffee beans wireless
    headphones children books winter jackets running shoes yoga mats ceramic plates camping
    tents bamboo toothbrush stainless steel water bottles laptop sleeves cotton bed sheets
    wool socks herbal tea scented candles board games puzzle electric guitars violin strings
    drum kits office chairs standing desks mechanical keyboards gaming mice phone cases
    screen protectors baby strollers car seats pet food dog leashes cat toys aquarium
    filters bird feeders fishing rods golf clubs tennis rackets bicycle helmets skateboards
    snowboards ski goggles swimwear sunglasses watches bracelets necklaces earrings rings
    handbags wallets belts scarves gloves hats umbrellas raincoats sandals slippers sneakers
    loafers dresses skirts jeans shirts sweaters hoodies pajamas suits ties perfume lipstick
    shampoo soap lotion sunscreen vitamins protein powder thermometers blenders toasters
    ovens microwaves refrigerators freezers washing machines dryers vacuum cleaners irons
    fans heaters lamps curtains rugs pillows blankets mattresses sofas armchairs bookshelves
    walnut maple oak linen silk velvet denim copper brass marble granite glass porcelain
    handmade rustic modern classic compact portable waterproof foldable ergonomic premium
"""
CATALOGUE_WORDS = tuple(_WORDS.split())
#: The bulk insert: the triggers raise the catalogue version once per row on SQLite.
INSERT_CATEGORY = "INSERT INTO categories (name, name_key) VALUES (?, ?)"
LIST_CATEGORIES = "SELECT id, name FROM categories ORDER BY id"


def natural_names(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct names of two to four catalogue words, the same for a ``seed``,
    none of them a seed category's."""
    draw = random.Random(seed)
    taken = {name.casefold() for name in SEED_CATEGORY_NAMES}
    names: list[str] = []
    while len(names) < count:
        name = " ".join(
            draw.choice(CATALOGUE_WORDS).capitalize() for _ in range(draw.randint(2, 4))
        )
        if name.casefold() not in taken:
            taken.add(name.casefold())
            names.append(name)
    return names


def build_catalogue(workdir: Path, categories: int, *, natural: bool = False) -> Path:
    """A SQLite file at the newest schema holding ``categories`` categories, seeds first.

    init-db makes the schema and the seed categories; one executemany adds the rest
    in one transaction (200,000 rows in a few seconds, where 200,000 POSTs would take
    an hour). Contenders get copies of it, so every one lists the same ids and names.
    ``natural``: names of catalogue words (:func:`natural_names`) instead of
    ``GENERATED_NAME_FORMAT``'s numbered ones.
    """
    kind = "natural" if natural else "numbered"
    path = workdir / f"catalogue-{categories}-{kind}.sqlite"
    prepare({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "LOG_LEVEL": "WARNING"}, quiet=True)
    first_generated = len(SEED_CATEGORY_NAMES) + 1
    generated = max(0, categories - len(SEED_CATEGORY_NAMES))
    names = (
        natural_names(generated)
        if natural
        else (
            GENERATED_NAME_FORMAT.format(number)
            for number in range(first_generated, categories + 1)
        )
    )
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.executemany(INSERT_CATEGORY, ((name, name_key(name)) for name in names))
    return path


def catalogue_representation(path: Path) -> Representation:
    """The list's representation as the app builds it: the bytes every contender must send."""
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(LIST_CATEGORIES).fetchall()
    return Representation.of([{"id": category_id, "name": name} for category_id, name in rows])


def copy_catalogue_to_postgresql(catalogue: Path, url: str) -> None:
    """The catalogue's categories past the seeds, into the PostgreSQL database at ``url``
    (a SQLAlchemy URL, at the newest schema with the seeds: ``prepare`` made it)."""
    import psycopg  # the PostgreSQL driver: installed where PostgreSQL is used

    with closing(sqlite3.connect(catalogue)) as source:
        rows = source.execute(
            "SELECT name, name_key FROM categories WHERE id > ? ORDER BY id",
            (len(SEED_CATEGORY_NAMES),),
        ).fetchall()
    libpq_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq_url) as target, target.cursor() as cursor:
        cursor.executemany(INSERT_CATEGORY.replace("?", "%s"), rows)


def insert_category(database_url: str, name: str) -> None:
    """One category added with plain SQL, as a back-office tool adds it (the database's
    own change signal, not the app's, tells the caches)."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO categories (name, name_key) VALUES (:name, :name_key)"),
                {"name": name, "name_key": name_key(name)},
            )
    finally:
        engine.dispose()


def copying_catalogue(catalogue: Path) -> Callable[[Mapping[str, Any]], None]:
    """``servers.serving``'s ``prepare_database``: the catalogue becomes the contender's file."""

    def copy_into(settings: Mapping[str, Any]) -> None:
        database = make_url(settings["SQLALCHEMY_DATABASE_URI"]).database
        if database is None:
            raise ValueError(f"no database file in {settings['SQLALCHEMY_DATABASE_URI']}")
        shutil.copyfile(catalogue, database)

    return copy_into
