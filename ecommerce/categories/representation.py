"""The cached value is the HTTP representation: bytes encoded, tagged and compressed once.

A hit used to re-encode the whole list as JSON and hash it for the ETag on every
request: at 10,000 categories that was most of a hit's time. Now a load builds a
:class:`Representation` once (the JSON body, its gzip form, a strong ETag for each)
and every hit sends stored bytes: no encoding, hashing, copying or, for a client
that accepts gzip, decompression.

What is stored where:

- in memory (the near-cache, or the object a load just built): both bodies;
- pickled (DynamoDB, SimpleCache): the gzip body and the tags only, half the
  bytes of both bodies and so half the DynamoDB read units; the identity body is
  decompressed from it the first time a client that accepts no compression asks
  for it, and then kept in the object (a near-cache copy pays it once per copy);
- a body that gzip does not make smaller (a very short list) is stored as itself.

ETags (RFC 9110, 8.8.3): a strong tag names one sequence of bytes, so each coding
has its own: the tag of the identity body is Werkzeug's hash of it (the tag the
release before this one gave the same list, so a roll-out costs no 200 that a
304 would have answered), the gzip body's tag is the hash of the gzip bytes. Both
are deterministic (gzip's mtime is 0, the level fixed), so every instance tags
one list alike.

Negotiation (RFC 9110, 12.5.3), in :func:`coding_preferences` and
:func:`negotiated_response`:

- ``Accept-Encoding`` weights (q-values), ``*``, ``identity``, ``x-gzip`` as gzip,
  any case and optional whitespace; a coding with ``q=0`` is refused;
- identity is acceptable unless ``identity;q=0``, or ``*;q=0`` without an
  ``identity`` entry, refuses it;
- no header, an empty one, or one that is malformed or longer than
  :data:`MAX_ACCEPT_ENCODING_LENGTH`: identity, which every client can read
  (sending gzip to a client that did not ask for it breaks curl and wrk);
- identity refused and gzip not acceptable (or not stored): identity all the
  same, as RFC 9110 12.1 allows (disregard the header) rather than a 406: every
  client can decode it, and ``Vary`` keeps caches from handing it to others;
- equal weights: gzip, the smaller;
- ``If-None-Match`` (weak comparison, lists, ``*``): a 304 when it holds the tag
  of any variant the client accepts, and that 304 carries that variant's tag, so
  a cache holding several variants freshens exactly the one it has.

No Flask application state is needed to build or serve one, so ``/openapi.json``
is served the same way (``ecommerce/openapi.py``).
"""

from __future__ import annotations

import enum
import functools
import gzip
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Request, Response
from werkzeug.datastructures import ETags
from werkzeug.http import generate_etag, parse_etags, quote_etag

#: Response headers as (name, value) pairs, hashable so that lists built from them keep.
Headerlist = tuple[tuple[str, str], ...]

JSON_MIMETYPE = "application/json"
ACCEPT_ENCODING = "Accept-Encoding"
VARY = "Vary"
#: zlib's default balance: at 10,000 categories it takes ~10 ms once per load, and
#: level 9 buys ~8 % more for four times the time.
GZIP_LEVEL = 6
#: A fixed mtime makes the gzip bytes a function of the body alone, hence their tag.
GZIP_MTIME = 0
_GZIP_ISIZE_BYTES = 4
#: Browsers send about 25 characters (``gzip, deflate, br, zstd``); a header far
#: longer than any real client's is not parsed at all, so it costs nothing.
MAX_ACCEPT_ENCODING_LENGTH = 1024
#: Distinct ``Accept-Encoding`` values whose parse is kept: clients send a handful
#: (each browser and HTTP library its own constant), so a hit parses none; a client
#: sending a new one each time only cycles this many small entries.
PARSED_ACCEPT_ENCODINGS_KEPT = 256
#: Rankings kept: per distinct header (as above) and set of stored codings (two).
RANKINGS_KEPT = 2 * PARSED_ACCEPT_ENCODINGS_KEPT
#: 200 header lists kept: per variant (a representation has at most two) and set of
#: caller headers (one per cache status): a few per list; old ones cycle out.
HEADER_LISTS_KEPT = 64
#: Where WSGI puts the request's Accept-Encoding and If-None-Match (read there: no
#: header-object lookup).
_ACCEPT_ENCODING_KEY = "HTTP_ACCEPT_ENCODING"
_IF_NONE_MATCH_KEY = "HTTP_IF_NONE_MATCH"
#: The JSON Flask's ``jsonify`` writes outside debug mode, byte for byte (trailing
#: newline included), so the identity tag of a list is the previous release's.
_JSON_SEPARATORS = (",", ":")
_JSON_TRAILER = b"\n"

# RFC 9110's grammar for Accept-Encoding: #( codings [ weight ] ), empty list
# elements allowed; qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
# No two adjacent parts can match the same character, so matching stays linear.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QVALUE = r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)"
_CODING = rf"{_TOKEN}(?:[ \t]*;[ \t]*[qQ]={_QVALUE})?"
_ACCEPT_ENCODING_SYNTAX = re.compile(rf"[ \t,]*(?:{_CODING}(?:[ \t]*,[ \t,]*{_CODING})*)?[ \t,]*")
#: One element of a header that matched the grammar: its coding and its weight, if any.
_CODING_ELEMENT = re.compile(rf"({_TOKEN})(?:[ \t]*;[ \t]*[qQ]=({_QVALUE}))?")


class ContentCoding(enum.Enum):
    """The codings a representation is stored in; the value is the HTTP token."""

    GZIP = "gzip"
    IDENTITY = "identity"


#: Tokens RFC 9110 (8.4.1.3) says to treat as each coding.
_CODING_ALIASES = {ContentCoding.GZIP: ("gzip", "x-gzip"), ContentCoding.IDENTITY: ("identity",)}


def encode_json(value: Any) -> bytes:
    """``value`` as the API's JSON body (see ``_JSON_SEPARATORS``)."""
    return (
        json.dumps(value, ensure_ascii=True, sort_keys=True, separators=_JSON_SEPARATORS).encode()
        + _JSON_TRAILER
    )


@dataclass(frozen=True, slots=True)
class Representation:
    """One response body in every coding it is served in, with a strong tag for each.

    Immutable, so the near-cache holds and hands out the object itself
    (``cache_backends.frozen`` keeps a frozen dataclass of bytes and strings as
    it is). The one exception, invisible from outside: the identity body, when
    it arrived pickled as gzip only, is decompressed once and kept.

    :param identity_tag: the ETag value (unquoted) of the identity body.
    :param gzip_body: the gzip body; None when gzip would not make it smaller.
    :param gzip_tag: the ETag value (unquoted) of ``gzip_body``.
    :param identity: the identity body when known (after a load; from a pickle
        only when there is no gzip body); else :attr:`identity_body` derives it.
    """

    identity_tag: str
    gzip_body: bytes | None = field(default=None, repr=False)
    gzip_tag: str | None = None
    identity: bytes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, value: Any) -> Representation:
        """The JSON representation of ``value`` (a load's list)."""
        return cls.of_body(encode_json(value))

    @classmethod
    def of_body(cls, body: bytes) -> Representation:
        """``body`` tagged, and gzipped where that makes it smaller."""
        compressed = gzip.compress(body, GZIP_LEVEL, mtime=GZIP_MTIME)
        if len(compressed) >= len(body):
            return cls(generate_etag(body), identity=body)
        return cls(generate_etag(body), compressed, generate_etag(compressed), body)

    def __post_init__(self) -> None:
        if (self.gzip_body is None) != (self.gzip_tag is None):
            raise ValueError("a gzip body needs its tag, and a tag its body")
        if self.gzip_body is None and self.identity is None:
            raise ValueError("a representation needs at least one body")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The identity body is derivable from the gzip body: leave it out of what
        # DynamoDB stores (half the bytes) unless there is no gzip body.
        stored_identity = self.identity if self.gzip_body is None else None
        return Representation, (self.identity_tag, self.gzip_body, self.gzip_tag, stored_identity)

    def __sizeof__(self) -> int:
        """Bytes this object holds or will hold: both bodies, the identity one counted even
        before it is decompressed (a near-cache's byte bound must not grow by 8x later)."""
        if self.identity is not None:
            identity_size = len(self.identity)
        else:
            assert self.gzip_body is not None  # __post_init__: one body at least
            # RFC 1952 §2.3.1: a gzip member ends with ISIZE, the input's length mod 2**32.
            identity_size = int.from_bytes(self.gzip_body[-_GZIP_ISIZE_BYTES:], "little")
        return object.__sizeof__(self) + len(self.gzip_body or b"") + identity_size

    @property
    def identity_body(self) -> bytes:
        """The uncompressed body; decompressed on first use if it arrived as gzip only."""
        body = self.identity
        if body is None:
            assert self.gzip_body is not None  # __post_init__: one body at least
            body = gzip.decompress(self.gzip_body)
            # Deterministic, so threads racing here store equal bytes: a memo, not a change.
            object.__setattr__(self, "identity", body)
        return body

    @property
    def codings(self) -> tuple[ContentCoding, ...]:
        """The codings this body is stored in, smallest first."""
        if self.gzip_body is None:
            return (ContentCoding.IDENTITY,)
        return (ContentCoding.GZIP, ContentCoding.IDENTITY)

    def tag(self, coding: ContentCoding) -> str:
        """The ETag value (unquoted) of the body in ``coding``."""
        if coding is ContentCoding.GZIP and self.gzip_tag is not None:
            return self.gzip_tag
        return self.identity_tag

    def body(self, coding: ContentCoding) -> bytes:
        """The stored bytes of ``coding`` (identity if it is not stored)."""
        if coding is ContentCoding.GZIP and self.gzip_body is not None:
            return self.gzip_body
        return self.identity_body

    def decoded(self) -> Any:
        """The JSON value the body encodes (tests, diagnostics; never on a hit)."""
        return json.loads(self.identity_body)


@dataclass(frozen=True, slots=True)
class CodingPreferences:
    """What a request's ``Accept-Encoding`` makes of each stored coding: its weight, 0 = refused."""

    gzip: float
    identity: float

    def weight(self, coding: ContentCoding) -> float:
        return self.gzip if coding is ContentCoding.GZIP else self.identity

    def ranked(self, available: Sequence[ContentCoding]) -> list[ContentCoding]:
        """The acceptable codings of ``available``, best first; identity if none is.

        Ties go to the order of ``available`` (smallest body first).
        """
        acceptable = [coding for coding in available if self.weight(coding) > 0]
        acceptable.sort(key=self.weight, reverse=True)  # stable: ties keep their order
        return acceptable or [ContentCoding.IDENTITY]


#: No header, an empty one, or one not worth reading: identity, which every client reads.
IDENTITY_ONLY = CodingPreferences(gzip=0.0, identity=1.0)


@functools.lru_cache(maxsize=PARSED_ACCEPT_ENCODINGS_KEPT)
def coding_preferences(header: str | None) -> CodingPreferences:
    """Parse ``Accept-Encoding`` as RFC 9110 (12.5.3) says; never raises.

    A pure function of the header with an immutable result, so parses are kept
    (:data:`PARSED_ACCEPT_ENCODINGS_KEPT`): the grammar check was a tenth of a hit.

    Not Werkzeug's ``request.accept_encodings``: its parser skips a malformed
    item (and RFC-valid weights such as ``q=0.``) instead of rejecting the
    header, and its ``Accept`` treats an unlisted coding as refused, while
    identity is acceptable unless refused. With the grammar checked first, the
    elements are read by the same expression that checked them.
    """
    if (
        not header
        or len(header) > MAX_ACCEPT_ENCODING_LENGTH
        or _ACCEPT_ENCODING_SYNTAX.fullmatch(header) is None
    ):
        return IDENTITY_ONLY
    weights: dict[str, float] = {}
    for element in _CODING_ELEMENT.finditer(header):
        token, weight = element[1].lower(), float(element[2] or 1)
        weights[token] = max(weight, weights.get(token, 0.0))  # listed twice: the kinder
    if not weights:  # "", " , ": no coding wanted (RFC 9110, 12.5.3)
        return IDENTITY_ONLY
    star = weights.get("*")

    def weight_of(coding: ContentCoding, unlisted: float) -> float:
        named = [weights[alias] for alias in _CODING_ALIASES[coding] if alias in weights]
        if named:
            return max(named)
        return unlisted if star is None else star

    return CodingPreferences(
        gzip=weight_of(ContentCoding.GZIP, unlisted=0.0),
        identity=weight_of(ContentCoding.IDENTITY, unlisted=1.0),
    )


def _held_by_client(
    representation: Representation, ranked: Sequence[ContentCoding], if_none_match: ETags
) -> ContentCoding | None:
    """The best-ranked acceptable coding whose tag the client sent; ``*`` matches the best."""
    for coding in ranked:
        if if_none_match.contains_weak(representation.tag(coding)):
            return coding
    return None


@functools.lru_cache(maxsize=RANKINGS_KEPT)
def _ranked(header: str | None, available: tuple[ContentCoding, ...]) -> tuple[ContentCoding, ...]:
    return tuple(coding_preferences(header).ranked(available))


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer to a GET of a representation, as plain values any WSGI layer can send.

    :param status: 200 or 304.
    :param headers: every header the answer carries (a 200's ``Content-Length``
        included; a 304 carries no entity header, as Werkzeug sends one).
    :param body: the 200's stored bytes; empty for a 304 (a HEAD sends none either).
    """

    status: int
    headers: Headerlist
    body: bytes


@functools.lru_cache(maxsize=HEADER_LISTS_KEPT)
def _headers_of_200(
    tag: str, coding: ContentCoding, length: int, headers: Headerlist
) -> Headerlist:
    """What a 200 of the body tagged ``tag`` in ``coding`` carries.

    A pure function of its arguments, so kept: a hit hands the list over whole
    instead of setting seven headers one by one, each a search of the others.
    """
    prebuilt = [("Content-Type", JSON_MIMETYPE)]
    if coding is ContentCoding.GZIP:
        prebuilt.append(("Content-Encoding", ContentCoding.GZIP.value))
    prebuilt += _headers_of_variant(tag, headers)
    prebuilt.append(("Content-Length", str(length)))
    return tuple(prebuilt)


@functools.lru_cache(maxsize=HEADER_LISTS_KEPT)
def _headers_of_variant(tag: str, headers: Headerlist) -> Headerlist:
    """What every answer standing for the body tagged ``tag`` carries: a 304's headers."""
    return (("ETag", quote_etag(tag)), (VARY, ACCEPT_ENCODING), *headers)


def negotiate(
    representation: Representation,
    accept_encoding: str | None,
    if_none_match: str | None,
    headers: Headerlist = (),
) -> Answer:
    """A 200 with the stored body the client accepts best, or a 304 if it holds one already.

    Both carry ``Vary: Accept-Encoding``, the ETag of the variant they stand for
    and ``headers`` (the caller's ``Cache-Control``, ``X-Cache``...: pass what never
    changes between hits here, where an answer's headers are built once per variant).
    ``accept_encoding`` and ``if_none_match`` are the request's headers as sent.
    """
    ranked = _ranked(accept_encoding, representation.codings)
    held = None
    if if_none_match:
        held = _held_by_client(representation, ranked, parse_etags(if_none_match))
    if held is None:
        coding = ranked[0]
        body = representation.body(coding)
        tag = representation.tag(coding)
        return Answer(200, _headers_of_200(tag, coding, len(body), headers), body)
    return Answer(304, _headers_of_variant(representation.tag(held), headers), b"")


def negotiated_response(
    representation: Representation, request: Request, headers: Headerlist = ()
) -> Response:
    """:func:`negotiate`'s answer to ``request`` as a Flask response."""
    environ = request.environ
    answer = negotiate(
        representation,
        environ.get(_ACCEPT_ENCODING_KEY),
        environ.get(_IF_NONE_MATCH_KEY),
        headers,
    )
    return Response(answer.body, status=answer.status, headers=answer.headers)
