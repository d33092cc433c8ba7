"""The item format: a value becomes one signed DynamoDB item, and an item a trusted value.

Writing: the serializer's bytes are sealed by the codec (``codec.py``: signed
with the key and the expiry, compressed when it pays) under the storage key
(``keys.py``), with the millisecond expiry that reads go by and the TTL
attribute DynamoDB deletes by (``models.py``). Reading: an item past its expiry,
unsigned, or a counter ``inc()`` did not make is absent; nothing is unpickled
before its signature has been checked.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cachelib.serializers import BaseSerializer

from cache_backends.codec import EntryCodec, InvalidEntry
from cache_backends.keys import storage_key, validate_key_prefix
from cache_backends.models import KEY_ATTRIBUTE, CacheEntry, ItemAttributes, StoredItem

logger = logging.getLogger(__name__)

#: DynamoDB's item size limit. Attribute names count towards it too.
MAX_ITEM_BYTES = 400 * 1024
#: Room for attribute names, the two expiry numbers and DynamoDB's per-item overhead.
ITEM_OVERHEAD_BYTES = 128
#: datetime (and so PynamoDB's TTLAttribute) ends at 9999-12-31; longer timeouts are capped.
MAX_EPOCH_SECONDS = 253_402_300_799
#: What a counter item's ``value`` holds, signed: proof that inc() made it.
COUNTER_MARKER = b"\x00dynamodb-cache-counter"

#: ``timeout`` (None: the cache's default) in whole seconds; 0 means never expire.
TimeoutSeconds = Callable[[int | timedelta | None], int]


def now_ms() -> int:
    return int(time.time() * 1000)


def is_expired(entry: ItemAttributes) -> bool:
    return entry.expires_ms is not None and entry.expires_ms <= now_ms()


def entry_from_raw(raw: dict[str, Any]) -> StoredItem | None:
    """The item, or None (logged) if someone wrote it with the wrong types."""
    try:
        return StoredItem.from_raw(raw)
    except ValueError as error:
        logger.warning(
            "cache item %r is malformed, treated as absent: %s",
            raw.get(KEY_ATTRIBUTE, {}).get("S"),
            error,
        )
        return None


def _ttl_attribute(expires_ms: int | None) -> datetime | None:
    """The TTL attribute's value: whole seconds, rounded up so DynamoDB never deletes early."""
    if expires_ms is None:
        return None
    return datetime.fromtimestamp(math.ceil(expires_ms / 1000), UTC)


class EntryFormat:
    """One cache's items: its key prefix, signing keys, serializer and default timeout.

    :param timeout_seconds: the backend's ``BaseCache._normalize_timeout``, so
        that ``default_timeout`` stays where Flask-Caching and cachelib keep it.
    """

    def __init__(
        self,
        key_prefix: str,
        codec: EntryCodec,
        serializer: BaseSerializer,
        timeout_seconds: TimeoutSeconds,
    ) -> None:
        self.key_prefix = validate_key_prefix(key_prefix)
        self.codec = codec
        #: pickle unless replaced: any cachelib serializer can be (CACHE_SERIALIZER).
        self.serializer = serializer
        self._timeout_seconds = timeout_seconds

    def storage_key(self, key: str) -> str:
        return storage_key(self.key_prefix, key)

    def expires_ms(self, timeout: int | timedelta | None) -> int | None:
        """Epoch milliseconds when an entry set now with ``timeout`` stops being served."""
        seconds = self._timeout_seconds(timeout)
        if seconds <= 0:
            return None
        return min(now_ms() + seconds * 1000, MAX_EPOCH_SECONDS * 1000)

    def item(
        self, model: type[CacheEntry], skey: str, expires_ms: int | None, **attributes: Any
    ) -> CacheEntry:
        """An item with the expiry pair and this cache's prefix filled in."""
        return model(
            skey,
            expires_ms=expires_ms,
            expires_at=_ttl_attribute(expires_ms),
            prefix=self.key_prefix or None,
            **attributes,
        )

    def new_entry(
        self, model: type[CacheEntry], key: str, value: Any, timeout: int | timedelta | None
    ) -> CacheEntry | None:
        """A signed item for ``value``, or None (logged) if it cannot be stored."""
        skey = self.storage_key(key)
        expires_ms = self.expires_ms(timeout)
        try:
            body = self.serializer.dumps(value)
        except Exception as error:  # pickle raises many types for unpicklable values
            logger.warning("cache set(%r): value not serializable: %s", key, error)
            return None
        if body is None:  # cachelib's serializers log and return None on pickling errors
            logger.warning("cache set(%r): value not serializable", key)
            return None
        blob = self.codec.seal(skey, body, expires_ms)
        size = len(blob) + len(skey.encode()) + len(self.key_prefix.encode()) + ITEM_OVERHEAD_BYTES
        if size > MAX_ITEM_BYTES:
            logger.warning(
                "cache set(%r) refused: %d bytes after compression exceed DynamoDB's 400 KB item "
                "limit",
                key,
                len(blob),
            )
            return None
        return self.item(model, skey, expires_ms, value=blob)

    def counter_item(
        self, model: type[CacheEntry], skey: str, count: int, expires_ms: int | None
    ) -> CacheEntry:
        """A counter holding ``count``, with the signed marker that makes it one."""
        marker = self.codec.seal(skey, COUNTER_MARKER, expires_ms)
        return self.item(model, skey, expires_ms, counter=count, value=marker)

    def payload(self, entry: ItemAttributes) -> bytes | int | None:
        """A live entry's verified serialized body, or its counter; None if untrusted."""
        if is_expired(entry) or entry.value is None:
            return None
        try:
            body = self.codec.unseal(entry.cache_key, entry.value, entry.expires_ms)
        except InvalidEntry as error:
            logger.warning("cache entry %r rejected, not loaded: %s", entry.cache_key, error)
            return None
        if entry.counter is None:
            return body
        if body == COUNTER_MARKER and type(entry.counter) is int:
            return entry.counter
        logger.warning("cache entry %r rejected: not a counter inc() made", entry.cache_key)
        return None

    def value_of(self, entry: ItemAttributes) -> Any:
        """The verified value of an item, or None for an expired or untrusted one."""
        payload = self.payload(entry)
        if not isinstance(payload, bytes):
            return payload
        try:
            return self.serializer.loads(payload)
        except Exception as error:  # ours, but unloadable here (e.g. a class since renamed)
            logger.warning("cache entry %r could not be loaded: %s", entry.cache_key, error)
            return None
