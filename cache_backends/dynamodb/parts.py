"""Values larger than one item: parts under a unique write id, found through one manifest.

DynamoDB refuses an item over 400 KB. A value whose sealed blob (``codec.py``:
serialized, compressed, signed under its storage key and expiry) is larger is
split into *parts*, each an item of its own, and the key itself holds a small
*manifest* naming them. The order of a write is the fence:

1. the parts go first (``BatchWriteItem``), each under a key derived from a
   write id drawn at random for this one write, signed under that key, with
   the entry's expiry, TTL and key prefix;
2. the manifest goes last, by the same ``PutItem`` (and, for ``add`` and
   ``set_versioned``, the same condition) a small value takes.

A reader finds parts only through the manifest it read in one ``GetItem``,
never by listing what happens to be in the table (ARCHITECTURE.md, "Large
values in DynamoDB"). Parts under a write id are written by one writer, once,
before its manifest, and never changed, so the parts a manifest names are that
write's parts or nothing: a reader can never combine two versions, and a write
whose manifest did not land is never seen. Every part's signature, then the
digest of the whole blob that the signed manifest carries, then the blob's own
signature are checked before anything is deserialized; a part missing or
failing any check makes the whole value a miss, logged and counted.

Overwritten and deleted values leave their parts behind: they expire with the
entry they belonged to and DynamoDB's TTL reclaims them (a reader that has just
read the old manifest may still be fetching them, so deleting them at once
would only turn its hit into a miss). A write whose manifest was refused (an
``add`` on a live key, a ``set_versioned`` of a lower rank) deletes its own
parts at once, best effort: no manifest names them.

Key layout, for a storage key ``<prefix><key>`` (see ``keys.py``)::

    <prefix><key>                               the manifest (parts = N)
    <prefix>#sha256:parts:<write id>:<i>        part i, 0 <= i < N

Plain storage keys never contain ``#sha256:`` and digest keys end in 64 hex
digits, so no cache key can ever address a part; the manifest is signed under
``<storage key>#sha256:manifest`` for the same reason: adding or removing the
``parts`` attribute turns an entry into something no signature covers.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cache_backends.keys import DIGEST_MARKER

#: Bytes of the sealed blob carried by one part: DynamoDB's 400 KB item limit less
#: room for the part's key and key_prefix (at most 2048 bytes each), its signature
#: header and attribute names. A part is billed ~98 read units (4 KB) strongly consistent.
PART_BYTES = 392 * 1024
#: Parts a manifest may name: ~390 MB, far above any max_value_bytes worth paying for.
MAX_PARTS = 1000
#: Random bytes of a write id: two writes never share a part key.
WRITE_ID_BYTES = 16
PART_KEY_MARKER = f"{DIGEST_MARKER}parts:"
MANIFEST_SIGNING_SUFFIX = f"{DIGEST_MARKER}manifest"
#: Opens every manifest body: which format follows (a new one gets a new marker).
MANIFEST_MARKER = b"\x00dynamodb-cache-manifest\x01"
#: part count, blob length, write id, SHA-256 of the blob.
_MANIFEST_LAYOUT = struct.Struct(f">IQ{WRITE_ID_BYTES}s32s")

#: Why a large value was read as a miss (reasons of ``entries.Rejections``, the app's
#: metric labels): a part absent (reclaimed by TTL, never written), a part failing its
#: signature, parts that do not make the manifest's digest, a manifest failing its checks.
MISSING = "missing_part"
BAD_PART = "bad_part"
BAD_DIGEST = "bad_digest"
BAD_MANIFEST = "bad_manifest"


@dataclass(frozen=True, slots=True)
class Manifest:
    """What the key of a large value holds, signed: which parts make it, and its digest."""

    count: int
    length: int
    write_id: bytes
    digest: bytes

    @classmethod
    def for_blob(cls, blob: bytes) -> Manifest:
        """A manifest for a new write of ``blob``, under a write id of its own."""
        return cls(
            count=-(-len(blob) // PART_BYTES),
            length=len(blob),
            write_id=secrets.token_bytes(WRITE_ID_BYTES),
            digest=hashlib.sha256(blob).digest(),
        )

    def encode(self) -> bytes:
        return MANIFEST_MARKER + _MANIFEST_LAYOUT.pack(
            self.count, self.length, self.write_id, self.digest
        )

    @classmethod
    def decode(cls, body: bytes) -> Manifest:
        """The manifest in a verified body; ValueError if it is not one."""
        if not body.startswith(MANIFEST_MARKER):
            raise ValueError("not a manifest")
        try:
            count, length, write_id, digest = _MANIFEST_LAYOUT.unpack(body[len(MANIFEST_MARKER) :])
        except struct.error as error:
            raise ValueError(f"malformed manifest: {error}") from error
        # Not checked against PART_BYTES: a release that slices differently must
        # still read what this one wrote. Only bounded, so a manifest cannot
        # name billions of keys.
        if not 1 <= count <= min(length, MAX_PARTS):
            raise ValueError(f"{count} parts cannot hold {length} bytes")
        return cls(count, length, write_id, digest)

    def part_keys(self, key_prefix: str) -> list[str]:
        """The storage keys of this write's parts, in order."""
        write_id = self.write_id.hex()
        return [f"{key_prefix}{PART_KEY_MARKER}{write_id}:{i}" for i in range(self.count)]


def split(blob: bytes) -> list[bytes]:
    """``blob`` in PART_BYTES slices, the last one shorter."""
    view = memoryview(blob)
    return [bytes(view[start : start + PART_BYTES]) for start in range(0, len(blob), PART_BYTES)]


def manifest_signing_key(skey: str) -> str:
    """What a manifest is signed under: never a storage key, so never an ordinary entry's."""
    return skey + MANIFEST_SIGNING_SUFFIX


def joined(manifest: Manifest, bodies: Mapping[str, bytes], part_keys: list[str]) -> bytes:
    """The blob the parts make; ValueError (the reason) if they do not make the manifest's."""
    blob = b"".join(bodies[key] for key in part_keys)
    if len(blob) != manifest.length or hashlib.sha256(blob).digest() != manifest.digest:
        raise ValueError("the parts do not make the manifest's value")
    return blob
