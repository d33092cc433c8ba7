"""Category names as identifiers people read: one spelling per name, nothing hidden.

A name is normalized to NFKC and trimmed, so "Books" typed in fullwidth letters
(U+FF22 ...) is stored as "Books". Refused: control and format characters
(Unicode Cc and Cf: NUL, ESC, zero-width spaces, bidi overrides such as
U+202E), line and paragraph separators (Zl, Zp), unassigned code points (Cn),
lone surrogates, and the other default-ignorable code points (variation
selectors, the combining grapheme joiner, Hangul fillers), none of which a
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
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
#: Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt) outside Cf and Cn,
#: which the table above already refuses; unicodedata has no such property. Hangul
#: fillers U+3164 and U+FFA0 are not listed: NFKC turns both into U+1160.
INVISIBLE_RANGES = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors (U+180E is Cf)
    (0xFE00, 0xFE0F),  # variation selectors
    (0xE0100, 0xE01EF),  # variation selectors supplement
)


class InvalidName(ValueError):
    """The name cannot be a category name; the message says why, for the client."""


def normalize_name(raw: str) -> str:
    """The name as stored: NFKC, trimmed; InvalidName if it is empty or hides something.

    Whitespace around the name (tabs and newlines included) is trimmed first;
    inside it, a control character is refused like any other.
    """
    name = unicodedata.normalize(NORMAL_FORM, raw).strip()
    for character in name:
        reason = _why_refused(character)
        if reason is not None:
            raise InvalidName(f'"name" must not contain {reason} (U+{ord(character):04X})')
    if not name:
        raise InvalidName('"name" must not be blank')
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidName(f'"name" must be at most {NAME_MAX_LENGTH} characters')
    return name


def _why_refused(character: str) -> str | None:
    """What makes ``character`` unfit for a name a reader must see, or None."""
    category = unicodedata.category(character)
    if category in REFUSED_CATEGORIES:
        return REFUSED_CATEGORIES[category]
    code_point = ord(character)
    if any(first <= code_point <= last for first, last in INVISIBLE_RANGES):
        return "an invisible character"
    return None


def name_key(name: str) -> str:
    """What uniqueness compares: the casefold of the normalized name."""
    return unicodedata.normalize(NORMAL_FORM, unicodedata.normalize(NORMAL_FORM, name).casefold())
