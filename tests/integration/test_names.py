"""Category names as identifiers: NFKC, nothing invisible, unique by casefold, in the database."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from ecommerce.categories.names import InvalidName, name_key, normalize_name
from tests.support.app import ON_BOTH_DATABASES, categories_in_db
from tests.support.problems import assert_problem

FULLWIDTH_BOOKS = "\uff22\uff4f\uff4f\uff4b\uff53"  # "Books" in fullwidth letters


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (FULLWIDTH_BOOKS, "Books"),
        ("  Board Games \t\n", "Board Games"),
        ("Caf\u0065\u0301", "Caf\u00e9"),  # e + combining acute: one precomposed character
        ("\u2160 Roman", "I Roman"),  # compatibility forms fold to their plain letters
    ],
)
def test_names_are_stored_in_nfkc_and_trimmed(raw: str, stored: str) -> None:
    assert normalize_name(raw) == stored


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("\u200b", "invisible"),  # zero-width space alone
        ("\u200bBooks", "invisible"),
        ("Books\u200d", "invisible"),  # zero-width joiner
        ("\u202eskoob", "invisible"),  # right-to-left override
        ("a\x00b", "control"),
        ("\x1b[31mred", "control"),
        ("bell\x07", "control"),
        ("tab\tinside", "control"),
        ("x\u0378", "unassigned"),
        ("Books\u2028Toys", "line separator"),
        ("Books\u2029Toys", "paragraph separator"),
        ("Boo\u034fks", "invisible"),  # combining grapheme joiner
        ("\u3164", "invisible"),  # Hangul filler: NFKC gives U+1160, also a filler
        ("\uffa0Books", "invisible"),  # halfwidth Hangul filler
        ("Books\ufe0f", "invisible"),  # variation selector
        ("Books\U000e0100", "invisible"),  # variation selector supplement
        ("\ud800", "surrogate"),
        ("   ", "blank"),
        ("x" * 101, "at most 100"),
    ],
)
def test_invisible_control_and_unassigned_characters_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(InvalidName, match=reason):
        normalize_name(raw)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Books", FULLWIDTH_BOOKS),
        ("\u00c9lectronique", "\u00e9LECTRONIQUE"),
        ("Stra\u00dfe", "STRASSE"),  # casefold, not lower: ß folds to ss
        ("\u03a3\u03bf\u03c6\u03af\u03b1", "\u03c3\u03bf\u03c6\u03af\u03b1"),  # Greek capital sigma
    ],
)
def test_names_that_read_the_same_have_one_key(first: str, second: str) -> None:
    assert name_key(normalize_name(first)) == name_key(normalize_name(second))


@ON_BOTH_DATABASES
@pytest.mark.parametrize(
    ("existing", "duplicate"),
    [
        ("Books", FULLWIDTH_BOOKS),
        ("\u00c9lectronique", "\u00e9lectronique"),
        ("Stra\u00dfe", "STRASSE"),
    ],
)
def test_a_name_that_reads_the_same_is_409_naming_the_stored_category(
    app: Flask, existing: str, duplicate: str
) -> None:
    client = app.test_client()
    if existing != "Books":
        assert client.post("/categories", json={"name": existing}).status_code == 201
    database_before = categories_in_db(app)

    response = client.post("/categories", json={"name": duplicate})

    assert f"named {existing!r}" in assert_problem(response, 409)["detail"]
    assert categories_in_db(app) == database_before


@ON_BOTH_DATABASES
def test_a_fullwidth_name_is_stored_in_plain_letters(app: Flask) -> None:
    response = app.test_client().post("/categories", json={"name": "\uff27\uff41\uff4d\uff45"})

    assert response.status_code == 201
    assert response.get_json()["name"] == "Game"


@ON_BOTH_DATABASES
def test_the_database_itself_refuses_a_second_row_with_the_same_key(
    app: Flask, database_uri: str
) -> None:
    """Not only the check in Python: a writer that skips it meets the unique index."""
    other_writer = create_engine(database_uri)
    try:
        with pytest.raises(IntegrityError), other_writer.begin() as connection:
            connection.execute(
                text("INSERT INTO categories (name, name_key) VALUES (:name, 'books')"),
                {"name": FULLWIDTH_BOOKS},
            )
    finally:
        other_writer.dispose()
