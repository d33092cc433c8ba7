"""Category names as identifiers people read: one spelling per name, nothing hidden.

A name is normalized to NFKC and trimmed, so "Books" typed in fullwidth letters
(U+FF22 ...) is stored as "Books". Refused: control and format characters
(Unicode Cc and Cf: NUL, ESC, zero-width spaces, bidi overrides such as
U+202E), unassigned code points (Cn), and lone surrogates, none of which a
reader can see or every system can store.
Two names are the same category when their keys are equal: the Unicode
casefold of the normalized name (NFKC again after folding, as Unicode's
NFKC_Casefold does), so "Élec" and "élec", or "Straße" and "STRASSE", collide.
The database enforces it with a unique index on that key (models.py).

References: Unicode TR36 (security) and TR39 (confusables), PRECIS (RFC 8264).
"""

from __future__ import annotations

import unicodedata

#: Longer names are refused with 400 before they reach the database.
NAME_MAX_LENGTH = 100
NORMAL_FORM = "NFKC"
#: Control, format, unassigned and surrogate code points.
REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cn": "an unassigned code point",
    "Cs": "a lone surrogate",
}


class InvalidName(ValueError):
    """The name cannot be a category name; the message says why, for the client."""


def normalize_name(raw: str) -> str:
    """The name as stored: NFKC, trimmed; InvalidName if it is empty or hides something.

    Whitespace around the name (tabs and newlines included) is trimmed first;
    inside it, a control character is refused like any other.
    """
    name = unicodedata.normalize(NORMAL_FORM, raw).strip()
    for character in name:
        category = unicodedata.category(character)
        if category in REFUSED_CATEGORIES:
            raise InvalidName(
                f'"name" must not contain {REFUSED_CATEGORIES[category]} (U+{ord(character):04X})'
            )
    if not name:
        raise InvalidName('"name" must not be blank')
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidName(f'"name" must be at most {NAME_MAX_LENGTH} characters')
    return name


def name_key(name: str) -> str:
    """What uniqueness compares: the casefold of the normalized name."""
    return unicodedata.normalize(NORMAL_FORM, unicodedata.normalize(NORMAL_FORM, name).casefold())
