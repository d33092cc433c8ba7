"""The list's cached HTTP representation: Accept-Encoding, a tag per coding, 304s, Vary.

Unit tests of ``ecommerce.categories.representation`` first (parsing, including
hostile headers; what is built, pickled and held near), then the live app on both
backends: the variant each client gets, with what headers, and which tags get a 304.
"""

from __future__ import annotations

import gzip
import pickle
import random
from collections.abc import Callable

import pytest
from cachelib import SimpleCache
from flask import Flask, jsonify
from werkzeug.http import generate_etag, quote_etag
from werkzeug.test import TestResponse

from cache_backends.codec import FLAG_ZLIB, EntryCodec
from cache_backends.frozen import freeze
from cache_backends.near import NearCache
from cache_backends.versioned import VersionedEntry
from ecommerce.categories.representation import (
    IDENTITY_ONLY,
    MAX_ACCEPT_ENCODING_LENGTH,
    CodingPreferences,
    ContentCoding,
    Representation,
    coding_preferences,
)
from tests.support.app import SEED_CATEGORIES
from tests.support.caches import TEST_SIGNING_KEY

LIST = "/categories"
GZIP = "gzip"
#: What browsers send.
BROWSER_ACCEPT_ENCODING = "gzip, deflate, br, zstd"
#: A list large enough for gzip to pay well, as a real catalogue does.
LARGE_LIST = [{"id": i, "name": f"Category {i:05d}"} for i in range(1, 2001)]
#: Names that repeat less, as a real catalogue's do: their gzip body is random-looking.
_WORDS = ("Home", "Garden", "Toys", "Books", "Kitchen", "Outdoor", "Sports", "Audio")
MIXED_NAMES_LIST = [
    {"id": i, "name": f"{random.Random(i).choice(_WORDS)} {random.Random(-i).choice(_WORDS)} {i}"}
    for i in range(1, 2001)
]


# --- Accept-Encoding ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "gzip_weight", "identity_weight"),
    [
        ("gzip", 1.0, 1.0),
        (BROWSER_ACCEPT_ENCODING, 1.0, 1.0),
        ("GZip", 1.0, 1.0),  # codings are case-insensitive
        ("x-gzip", 1.0, 1.0),  # RFC 9110 8.4.1.3: the same as gzip
        ("gzip;q=0.5", 0.5, 1.0),
        ("gzip ; Q=0.25 , identity;q=0.5", 0.25, 0.5),  # optional whitespace, Q in any case
        ("\tgzip;q=1.000,", 1.0, 1.0),  # tab, three decimals, an empty list element
        ("gzip;q=0.", 0.0, 1.0),  # "0." is a valid qvalue: gzip refused
        ("gzip;q=0", 0.0, 1.0),  # refused; identity acceptable when unlisted
        ("*", 1.0, 1.0),
        ("*;q=0.3", 0.3, 0.3),  # "*" covers identity too when it is not listed
        ("gzip;q=0, *", 0.0, 1.0),  # a named coding wins over "*"
        ("*;q=0", 0.0, 0.0),  # everything refused
        ("identity;q=0", 0.0, 0.0),
        ("identity;q=0, *", 1.0, 0.0),
        ("br", 0.0, 1.0),  # not stored: identity
        ("gzip;q=0.2, gzip", 1.0, 1.0),  # listed twice: the kinder weight
        ("", 0.0, 1.0),  # empty: no coding wanted
        (" , ,", 0.0, 1.0),
    ],
)
def test_accept_encoding_follows_rfc_9110(
    header: str, gzip_weight: float, identity_weight: float
) -> None:
    assert coding_preferences(header) == CodingPreferences(gzip_weight, identity_weight)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "gzip;q=1.5",  # out of range
        "gzip;q=-1",
        "gzip;q=0.0001",  # four decimals
        "gzip;q=abc",
        "gzip;;q=1",
        "gzip;level=9",  # no parameter but q exists for codings
        "gzip q=1",
        "gz ip",
        '"gzip"',
        "gzip;q=",
        "gzip\x00",
        "gzip\r\nX-Injected: 1",
        "gzíp",
        "gzip;q=1;q=0",
        ",".join(["gzip"] * (MAX_ACCEPT_ENCODING_LENGTH // 4)),  # valid, absurdly long
        "a" * 100_000,
    ],
    ids=lambda header: repr(header)[:30],
)
def test_a_malformed_or_absurd_header_counts_as_absent(header: str | None) -> None:
    """Absent means identity here: gzip goes only to a client that asked for it."""
    assert coding_preferences(header) == IDENTITY_ONLY


def test_any_header_at_all_parses_without_raising() -> None:
    """Hostile input, seeded so that a failure reproduces: never an exception."""
    alphabet = "gzipidentity*xq=0.123456789;, \t\"'\\\x00\x7f\u00e9\U0001f600-"
    generator = random.Random(18)
    for _ in range(5_000):
        header = "".join(generator.choices(alphabet, k=generator.randint(0, 60)))
        preferences = coding_preferences(header)
        assert 0.0 <= preferences.gzip <= 1.0
        assert 0.0 <= preferences.identity <= 1.0


@pytest.mark.parametrize(
    ("preferences", "expected"),
    [
        (CodingPreferences(gzip=1.0, identity=1.0), [ContentCoding.GZIP, ContentCoding.IDENTITY]),
        (CodingPreferences(gzip=0.5, identity=1.0), [ContentCoding.IDENTITY, ContentCoding.GZIP]),
        (CodingPreferences(gzip=1.0, identity=0.0), [ContentCoding.GZIP]),
        # Nothing acceptable: identity all the same (RFC 9110 12.1), never a 406.
        (CodingPreferences(gzip=0.0, identity=0.0), [ContentCoding.IDENTITY]),
    ],
)
def test_the_best_acceptable_coding_comes_first(
    preferences: CodingPreferences, expected: list[ContentCoding]
) -> None:
    available = (ContentCoding.GZIP, ContentCoding.IDENTITY)
    assert preferences.ranked(available) == expected


# --- what a load builds, what the cache stores and holds ----------------------------


def test_the_identity_body_is_what_jsonify_wrote(app: Flask) -> None:
    """Byte for byte, so the previous release's tags stay valid across a roll-out."""
    representation = Representation.of(LARGE_LIST)
    with app.app_context():
        jsonified = jsonify(LARGE_LIST).get_data()
    assert representation.identity_body == jsonified
    assert representation.identity_tag == generate_etag(jsonified)


def test_each_coding_has_the_strong_tag_of_its_own_bytes() -> None:
    representation = Representation.of(LARGE_LIST)
    assert representation.gzip_body is not None
    assert gzip.decompress(representation.gzip_body) == representation.identity_body
    assert representation.gzip_tag == generate_etag(representation.gzip_body)
    assert representation.gzip_tag != representation.identity_tag
    assert len(representation.gzip_body) < len(representation.identity_body) // 5


def test_two_loads_of_one_list_build_the_same_bytes_and_tags() -> None:
    """gzip's mtime is fixed: every instance tags one list alike, in every coding."""
    first, second = Representation.of(LARGE_LIST), Representation.of(list(LARGE_LIST))
    assert first == second
    assert first.gzip_body == second.gzip_body


def test_a_body_gzip_does_not_shrink_is_kept_as_itself() -> None:
    tiny = Representation.of([1])
    assert (tiny.gzip_body, tiny.gzip_tag, tiny.codings) == (None, None, (ContentCoding.IDENTITY,))
    assert pickle.loads(pickle.dumps(tiny)).identity_body == b"[1]\n"


def test_the_pickled_form_holds_the_gzip_body_only() -> None:
    """What DynamoDB stores: the compressed bytes, decompressed only for identity clients."""
    representation = Representation.of(LARGE_LIST)
    assert representation.gzip_body is not None
    pickled = pickle.dumps(representation, pickle.HIGHEST_PROTOCOL)
    assert len(pickled) < len(representation.gzip_body) + 200
    assert b'"name":' not in pickled

    restored = pickle.loads(pickled)
    assert restored == representation
    assert restored.gzip_body == representation.gzip_body
    assert restored.identity_body == representation.identity_body  # decompressed once
    assert restored.identity_body is restored.identity_body  # ...and kept


def test_a_representation_is_inconsistent_never() -> None:
    with pytest.raises(ValueError, match="needs its tag"):
        Representation("tag", gzip_body=b"\x1f\x8b")
    with pytest.raises(ValueError, match="at least one body"):
        Representation("tag")


def test_the_near_cache_holds_the_representation_itself() -> None:
    """No copy and no unpickling per hit: the held object is handed out as it is."""
    representation = Representation.of(LARGE_LIST)
    entry = VersionedEntry(representation, 1, 1, float("inf"), float("inf"))
    assert freeze(representation) is representation
    assert freeze(entry) is entry

    near = NearCache(SimpleCache(), ttl=60)
    assert near.set("categories", entry)
    first, second = near.get("categories"), near.get("categories")
    assert first is second is entry
    with pytest.raises(AttributeError):
        first.value.gzip_body = b""  # type: ignore[misc]


def test_the_near_cache_counts_both_bodies_before_the_identity_one_is_decompressed() -> None:
    """A DynamoDB read arrives as gzip only and grows its identity body on the first plain
    client: the byte bound counts that body from the start, not the pickle's gzip size."""
    loaded = Representation.of(LARGE_LIST)
    assert loaded.gzip_body is not None
    both_bodies = len(loaded.gzip_body) + len(loaded.identity_body)
    restored = pickle.loads(pickle.dumps(loaded, pickle.HIGHEST_PROTOCOL))
    assert restored.identity is None
    entry = VersionedEntry(restored, 1, 1, float("inf"), float("inf"))

    near = NearCache(SimpleCache(), ttl=60, max_bytes=both_bodies - 1)
    assert near.set("categories", entry)
    assert near.near_size() == (0, 0)  # larger than the whole layer: not kept

    near = NearCache(SimpleCache(), ttl=60, max_bytes=both_bodies * 2)
    assert near.set("categories", entry)
    entries, held = near.near_size()
    assert entries == 1 and both_bodies <= held < both_bodies + 1_000
    assert restored.identity is None  # counted, not decompressed to count it


# --- the app ------------------------------------------------------------------------


def get_list(app: Flask, **headers: str) -> TestResponse:
    return app.test_client().get(LIST, headers=headers)


def test_a_gzip_client_gets_the_stored_gzip_body(make_story_app: Callable[..., Flask]) -> None:
    app = make_story_app()
    plain = get_list(app)
    compressed = get_list(app, **{"Accept-Encoding": BROWSER_ACCEPT_ENCODING})

    assert plain.headers["Vary"] == compressed.headers["Vary"] == "Accept-Encoding"
    assert "Content-Encoding" not in plain.headers
    assert compressed.headers["Content-Encoding"] == GZIP
    assert compressed.headers["X-Cache"] == "HIT"
    assert compressed.headers["Cache-Control"] == "no-cache"
    assert compressed.mimetype == "application/json"
    assert int(compressed.headers["Content-Length"]) == len(compressed.data)
    assert gzip.decompress(compressed.data) == plain.data
    assert plain.get_json() == SEED_CATEGORIES
    assert compressed.headers["ETag"] != plain.headers["ETag"]
    assert compressed.headers["ETag"] == quote_etag(generate_etag(compressed.data))


def test_another_instance_serves_the_same_bytes_and_tags(
    make_story_app: Callable[..., Flask],
) -> None:
    """On DynamoDB the second app's answer is a hit on what the first stored."""
    gzip_client = {"Accept-Encoding": GZIP}
    first = get_list(make_story_app(), **gzip_client)
    second_app = make_story_app()
    second = get_list(second_app, **gzip_client)
    assert (second.data, second.headers["ETag"]) == (first.data, first.headers["ETag"])
    assert get_list(second_app).get_json() == SEED_CATEGORIES  # identity from the gzip body


def test_either_tag_gets_a_304_with_the_tag_the_client_holds(
    make_story_app: Callable[..., Flask],
) -> None:
    app = make_story_app()
    identity_tag = get_list(app).headers["ETag"]
    gzip_tag = get_list(app, **{"Accept-Encoding": GZIP}).headers["ETag"]

    for held in (identity_tag, gzip_tag, f"W/{gzip_tag}", f'"other", {gzip_tag}'):
        answer = get_list(app, **{"Accept-Encoding": GZIP, "If-None-Match": held})
        assert (answer.status_code, answer.data) == (304, b""), held
        assert answer.headers["ETag"] in held
        assert answer.headers["Vary"] == "Accept-Encoding"
        assert answer.headers["X-Cache"] == "HIT"
        assert "Content-Encoding" not in answer.headers

    # A cache holding both variants: the 304 names the one the client prefers.
    both = get_list(
        app, **{"Accept-Encoding": GZIP, "If-None-Match": f"{identity_tag}, {gzip_tag}"}
    )
    assert (both.status_code, both.headers["ETag"]) == (304, gzip_tag)
    star = get_list(app, **{"Accept-Encoding": GZIP, "If-None-Match": "*"})
    assert (star.status_code, star.headers["ETag"]) == (304, gzip_tag)


def test_a_client_holding_a_coding_it_no_longer_accepts_gets_the_body(
    make_story_app: Callable[..., Flask],
) -> None:
    """Its gzip copy is no use to it: a 200 with identity, not a 304 for bytes it refuses."""
    app = make_story_app()
    gzip_tag = get_list(app, **{"Accept-Encoding": GZIP}).headers["ETag"]
    answer = get_list(app, **{"If-None-Match": gzip_tag})
    assert answer.status_code == 200
    assert "Content-Encoding" not in answer.headers
    assert answer.get_json() == SEED_CATEGORIES


@pytest.mark.parametrize(
    ("accept_encoding", "expected_coding"),
    [
        ("gzip;q=0.5, identity", None),  # the client prefers identity
        ("identity;q=0, gzip", GZIP),
        ("identity;q=0", None),  # gzip not named either: nothing acceptable, identity
        ("identity;q=0, gzip;q=0", None),  # nothing acceptable: identity (RFC 9110 12.1)
        ("*;q=0", None),
        ("br", None),
        ("gzip;q=abc", None),  # malformed: as absent
        ("gzip," * 10_000, None),  # absurd: as absent, not a 431 or a 500
    ],
    ids=lambda value: repr(value)[:24],
)
def test_the_app_answers_every_accept_encoding_with_a_body_it_can_name(
    make_story_app: Callable[..., Flask], accept_encoding: str, expected_coding: str | None
) -> None:
    answer = get_list(make_story_app(), **{"Accept-Encoding": accept_encoding})
    assert answer.status_code == 200
    assert answer.headers.get("Content-Encoding") == expected_coding
    body = gzip.decompress(answer.data) if expected_coding == GZIP else answer.data
    assert body.strip() == jsonify_seed_body()


def jsonify_seed_body() -> bytes:
    return Representation.of(SEED_CATEGORIES).identity_body.strip()


def test_head_with_gzip_names_the_gzip_length_and_sends_nothing(app: Flask) -> None:
    gzip_body = get_list(app, **{"Accept-Encoding": GZIP}).data
    head = app.test_client().head(LIST, headers={"Accept-Encoding": GZIP})
    assert (head.status_code, head.data) == (200, b"")
    assert head.headers["Content-Encoding"] == GZIP
    assert int(head.headers["Content-Length"]) == len(gzip_body)


def test_a_write_changes_both_tags(make_story_app: Callable[..., Flask]) -> None:
    app = make_story_app()
    client = app.test_client()
    tags = {get_list(app, **{"Accept-Encoding": e}).headers["ETag"] for e in ("", GZIP)}
    assert client.post(LIST, json={"name": "Toys"}).status_code == 201
    for held in tags:
        answer = get_list(app, **{"Accept-Encoding": GZIP, "If-None-Match": held})
        assert answer.status_code == 200
        assert answer.headers["ETag"] not in tags


def test_the_dynamodb_codec_stores_the_gzip_body_as_it_is() -> None:
    """zlib over gzip saves a fraction of a percent: not kept, so a read decompresses nothing."""
    representation = Representation.of(MIXED_NAMES_LIST)
    pickled = pickle.dumps(representation, pickle.HIGHEST_PROTOCOL)
    codec = EntryCodec(TEST_SIGNING_KEY)
    sealed = codec.seal("categories", pickled, expires_ms=None)
    assert sealed[1] & FLAG_ZLIB == 0
    assert codec.unseal("categories", sealed, expires_ms=None) == pickled
    assert codec.seal("list", pickle.dumps(MIXED_NAMES_LIST), None)[1] & FLAG_ZLIB  # still zlib
