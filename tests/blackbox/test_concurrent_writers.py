"""Concurrent POSTs through gunicorn, on SQLite and on PostgreSQL: nothing lost, nothing doubled.

The unit-level race (a rival insert between the name check and the insert) is forced
in tests/integration/test_errors.py; this is the same claim end to end, as clients see it: many
POSTs released at once against two gunicorn workers sharing one database.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from devtools.credentials import DEV_ADMIN_AUTHORIZATION
from devtools.fleet import gunicorn_instance, prepare, wait_until_healthy
from ecommerce.categories.names import normalize_name
from tests.support.app import ON_BOTH_DATABASES

pytestmark = [ON_BOTH_DATABASES, pytest.mark.slow]

DISTINCT_POSTS = 40
CASE_VARIANT_POSTS = 30
REQUEST_TIMEOUT_SECONDS = 30.0
SEED_ROWS = 3


def case_variants(name: str, count: int) -> list[str]:
    """``count`` spellings of ``name`` that the API treats as one: cases, and fullwidth letters."""
    fullwidth = "".join(chr(ord(letter) + 0xFEE0) for letter in name)  # U+FF01.. block
    cases = (
        "".join(letters) for letters in itertools.product(*((c.lower(), c.upper()) for c in name))
    )
    return [fullwidth, *itertools.islice(cases, count - 1)]


def post_all_at_once(url: str, names: list[str]) -> list[int]:
    """POST each name from its own thread, all released by one barrier; the status codes."""
    start = threading.Barrier(len(names))

    def post(name: str) -> int:
        start.wait()
        reply = requests.post(
            f"{url}/categories",
            json={"name": name},
            headers=DEV_ADMIN_AUTHORIZATION,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        return reply.status_code

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return list(pool.map(post, names))


def stored_names(database_uri: str) -> list[str]:
    engine = create_engine(database_uri)
    with engine.connect() as connection:
        names = list(connection.execute(text("SELECT name FROM categories ORDER BY id")).scalars())
    engine.dispose()
    return names


def test_concurrent_posts_under_gunicorn_keep_every_name_once(
    database_uri: str, tmp_path: Path, clean_flask_env: None
) -> None:
    settings = {"SQLALCHEMY_DATABASE_URI": database_uri}
    prepare(settings, quiet=True)
    distinct = [f"Category {number:02d}" for number in range(DISTINCT_POSTS)]
    variants = case_variants("Puzzles", CASE_VARIANT_POSTS)
    assert len(set(variants)) == CASE_VARIANT_POSTS

    with gunicorn_instance("writers", settings, tmp_path, workers=2) as instance:
        wait_until_healthy(instance.url, instance.process, instance.log_path)
        distinct_statuses = post_all_at_once(instance.url, distinct)
        variant_statuses = post_all_at_once(instance.url, variants)

    assert distinct_statuses == [201] * DISTINCT_POSTS
    assert sorted(variant_statuses) == [201] + [409] * (CASE_VARIANT_POSTS - 1)
    names = stored_names(database_uri)
    assert sorted(names[SEED_ROWS:-1]) == distinct
    assert names[-1] in {normalize_name(variant) for variant in variants}  # as stored: NFKC
    assert len(names) == SEED_ROWS + DISTINCT_POSTS + 1
