"""Map cache keys to DynamoDB partition keys.

DynamoDB rejects an empty partition key, one over 2048 bytes (UTF-8) and one
that is not valid Unicode (lone surrogates). Such keys, and any prefixed key
containing the digest marker, are stored as
``<key_prefix>#sha256:<hex of the whole prefixed key>``. Plain keys never hold
the marker, so they never meet a digest key; the digest covers the prefix too,
and the fixed-length digest after the marker keeps two prefixes' digest keys
apart.
"""

from __future__ import annotations

import hashlib

#: DynamoDB's limit for a partition key value, in UTF-8 bytes.
MAX_PARTITION_KEY_BYTES = 2048
DIGEST_MARKER = "#sha256:"
#: Room left for the prefix in a digest key: limit minus marker minus 64 hex digits.
MAX_PREFIX_BYTES_IN_DIGEST_KEY = MAX_PARTITION_KEY_BYTES - len(DIGEST_MARKER) - 64


def storage_key(key_prefix: str, key: str) -> str:
    """The partition key under which ``key`` is stored for this prefix."""
    if not isinstance(key, str):
        raise TypeError(f"cache keys must be str, not {type(key).__name__}")
    prefixed = key_prefix + key
    # surrogatepass: a str may hold lone surrogates, which UTF-8 (and so
    # DynamoDB) cannot carry; they still hash to a stable digest.
    encoded = prefixed.encode("utf-8", "surrogatepass")
    if (
        prefixed
        and DIGEST_MARKER not in prefixed
        and len(encoded) <= MAX_PARTITION_KEY_BYTES
        and _is_valid_utf8(encoded)
    ):
        return prefixed
    return f"{key_prefix}{DIGEST_MARKER}{hashlib.sha256(encoded).hexdigest()}"


def _is_valid_utf8(encoded: bytes) -> bool:
    try:
        encoded.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def validate_key_prefix(key_prefix: str) -> str:
    """Refuse a prefix so long that even digest keys would not fit."""
    if len(key_prefix.encode()) > MAX_PREFIX_BYTES_IN_DIGEST_KEY:
        raise ValueError(
            f"key_prefix is {len(key_prefix.encode())} bytes; at most "
            f"{MAX_PREFIX_BYTES_IN_DIGEST_KEY} fit in a DynamoDB partition key"
        )
    return key_prefix
