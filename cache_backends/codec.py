"""How a serialized value becomes the bytes of one DynamoDB item, and back.

Layout of the stored blob (the item's ``value`` attribute)::

    version (1 byte) | flags (1 byte) | HMAC-SHA256 (32 bytes) | body

The body is the backend serializer's output, zlib-compressed when that saves enough to
matter (DynamoDB bills writes per 1 KB and reads per 4 KB; see MIN_COMPRESSION_SAVING).
The MAC covers the storage key and the expiry as well as the body, so an entry copied
to another key or given a longer life by someone with write access to the table fails
verification, just as a forged one does. Nothing is deserialized before its
MAC has been checked: with pickle, loading a forged entry would run the
forger's code in every web process.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Iterable, Sequence

FORMAT_VERSION = 1
FLAG_ZLIB = 0b0000_0001
HEADER_LENGTH = 2
MAC_LENGTH = hashlib.sha256().digest_size
#: Below this, compression rarely crosses a 1 KB billing boundary and costs CPU.
DEFAULT_COMPRESS_THRESHOLD = 1024
#: Level 6 is zlib's default balance; higher levels buy little on JSON-ish data.
ZLIB_LEVEL = 6
#: Compression is kept only if it saves at least this fraction of the body. Less means
#: the body was compressed already (a cached gzip HTTP body shrinks by ~0.3 %), and a
#: saving that small is not worth a decompression on every read; JSON-ish data saves
#: 50-90 %.
MIN_COMPRESSION_SAVING = 0.05


class InvalidEntry(ValueError):
    """A stored blob that is truncated, of an unknown version, or not ours."""


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


class EntryCodec:
    """Sign and compress serialized values; verify before anything is loaded.

    :param signing_key: signs every new entry; shared by the whole fleet.
    :param old_signing_keys: still accepted when verifying, so a key can be
        rotated without a cold cache: deploy the new key with the old one
        listed here, and drop the old one after the longest TTL has passed.
    :param compress_threshold: bodies at least this long are compressed when
        that makes them smaller.
    """

    def __init__(
        self,
        signing_key: str | bytes,
        old_signing_keys: Iterable[str | bytes] = (),
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
    ) -> None:
        if not signing_key:
            raise ValueError("a non-empty signing key is required")
        self._signing_key = _as_bytes(signing_key)
        self._verifying_keys = [self._signing_key, *(_as_bytes(k) for k in old_signing_keys if k)]
        self.compress_threshold = compress_threshold

    @staticmethod
    def _mac(
        key: bytes, storage_key: str, expires_ms: int | None, header: bytes, body: bytes
    ) -> bytes:
        # Length-prefix the storage key so no (key, expiry) pair can be shifted
        # into another that hashes the same.
        encoded_key = storage_key.encode()
        message = b"".join(
            (
                len(encoded_key).to_bytes(4, "big"),
                encoded_key,
                (expires_ms or 0).to_bytes(8, "big"),
                header,
                body,
            )
        )
        return hmac.new(key, message, hashlib.sha256).digest()

    def seal(self, storage_key: str, body: bytes, expires_ms: int | None) -> bytes:
        """Maybe compress, then sign, a serialized value stored under ``storage_key``."""
        return self.seal_copies((storage_key,), body, expires_ms)[0]

    def seal_copies(
        self, storage_keys: Sequence[str], body: bytes, expires_ms: int | None
    ) -> list[bytes]:
        """:meth:`seal` of one value under each of ``storage_keys``: compressed once (the
        costly step), signed per key (a signature binds its key)."""
        flags = 0
        if len(body) >= self.compress_threshold:
            compressed = zlib.compress(body, ZLIB_LEVEL)
            if len(compressed) <= len(body) * (1 - MIN_COMPRESSION_SAVING):
                body, flags = compressed, flags | FLAG_ZLIB
        header = bytes((FORMAT_VERSION, flags))
        return [
            header + self._mac(self._signing_key, storage_key, expires_ms, header, body) + body
            for storage_key in storage_keys
        ]

    def unseal(self, storage_key: str, blob: bytes, expires_ms: int | None) -> bytes:
        """Verify ``blob`` and return the serialized value; :class:`InvalidEntry` if not ours."""
        if len(blob) < HEADER_LENGTH + MAC_LENGTH or blob[0] != FORMAT_VERSION:
            raise InvalidEntry("unknown format or truncated entry")
        header = blob[:HEADER_LENGTH]
        mac = blob[HEADER_LENGTH : HEADER_LENGTH + MAC_LENGTH]
        body = blob[HEADER_LENGTH + MAC_LENGTH :]
        if not any(
            hmac.compare_digest(mac, self._mac(key, storage_key, expires_ms, header, body))
            for key in self._verifying_keys
        ):
            raise InvalidEntry("signature does not match")
        if header[1] & FLAG_ZLIB:
            try:
                return zlib.decompress(body)
            except zlib.error as error:  # signed by us yet corrupt: still not loadable
                raise InvalidEntry(f"corrupt compressed body: {error}") from error
        return body
