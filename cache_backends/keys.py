"""Map cache keys to DynamoDB partition keys.

DynamoDB rejects an empty partition key and one over 2048 bytes (UTF-8). Such
keys, and any key that could be mistaken for the digest form, are stored as
``<key_prefix>#sha256:<hex of the whole prefixed key>``. The prefix stays in
front so ``clear()`` still finds them by prefix; the digest covers the prefix
too, so two caches with different prefixes never share an item.
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
    if prefixed and DIGEST_MARKER not in key and len(prefixed.encode()) <= MAX_PARTITION_KEY_BYTES:
        return prefixed
    digest = hashlib.sha256(prefixed.encode()).hexdigest()
    return f"{key_prefix}{DIGEST_MARKER}{digest}"


def validate_key_prefix(key_prefix: str) -> str:
    """Refuse a prefix so long that even digest keys would not fit."""
    if len(key_prefix.encode()) > MAX_PREFIX_BYTES_IN_DIGEST_KEY:
        raise ValueError(
            f"key_prefix is {len(key_prefix.encode())} bytes; at most "
            f"{MAX_PREFIX_BYTES_IN_DIGEST_KEY} fit in a DynamoDB partition key"
        )
    return key_prefix
