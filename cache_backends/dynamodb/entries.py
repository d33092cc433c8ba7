"""The item format: a value becomes signed DynamoDB items, and items a trusted value.

Writing: the serializer's bytes are sealed by the codec (``codec.py``: signed
with the key and the expiry, compressed when it pays) under the storage key
(``keys.py``), with the millisecond expiry that reads go by and the TTL
attribute DynamoDB deletes by (``models.py``). A sealed blob too large for one
item (up to ``max_value_bytes``) becomes parts and a manifest (``parts.py``).
Reading: an item past its expiry, unsigned, or a counter ``inc()`` did not make
is absent; nothing is unpickled before its signature has been checked, and a
value in parts not before every part's signature and the whole blob's digest.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cachelib.serializers import BaseSerializer

from cache_backends import signals
from cache_backends.codec import EntryCodec, InvalidEntry
from cache_backends.dynamodb.parts import (
    BAD_DIGEST,
    BAD_MANIFEST,
    BAD_PART,
    MAX_PARTS,
    MISSING,
    PART_BYTES,
    Manifest,
    joined,
    manifest_signing_key,
    split,
)
from cache_backends.dynamodb.settings import DEFAULT_MAX_VALUE_BYTES
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

#: Why an item was read but not served, besides the reasons of values in parts
#: (``parts.py``): its signature does not verify under any accepted key (forged, changed,
#: or signed with a key this process does not accept), a counter ``inc()`` did not make,
#: a verified body the serializer cannot load (a class since renamed).
BAD_SIGNATURE = "bad_signature"
NOT_A_COUNTER = "not_a_counter"
UNLOADABLE = "unloadable"

#: ``timeout`` (None: the cache's default) in whole seconds; 0 means never expire.
TimeoutSeconds = Callable[[int | timedelta | None], int]


def now_ms() -> int:
    return int(time.time() * 1000)


def is_expired(entry: ItemAttributes) -> bool:
    return entry.expires_ms is not None and entry.expires_ms <= now_ms()


class Rejections:
    """Items read but not served, by reason: each logged, counted, sent as ``entry_rejected``.

    A steady ``bad_signature`` means instances disagree on the signing key (a rotation
    done in the wrong order) or someone writes to the table; the app makes it a metric.
    An exception a receiver raises is logged, never the reader's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def record(self, skey: str, reason: str, detail: str = "") -> None:
        with self._lock:
            self._counts[reason] += 1
        logger.warning(
            "cache entry %r rejected, not served (%s)%s",
            skey,
            reason,
            f": {detail}" if detail else "",
        )
        try:
            signals.entry_rejected.send(self, reason=reason)
        except Exception:  # metrics must never break the cache
            logger.exception("an entry_rejected receiver failed")

    @property
    def counts(self) -> dict[str, int]:
        """Rejections so far by reason (this module's and parts.py's)."""
        with self._lock:
            return dict(self._counts)


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
    :param part_codec: signs the parts of a large value: the same keys as
        ``codec`` but no compression (the blob they slice is already compressed,
        and trying again would cost ~10 ms of zlib per part for nothing).
    :param max_value_bytes: the largest sealed (compressed, signed) value
        stored; larger ones are refused. Above one item it is stored in parts.
    """

    def __init__(
        self,
        key_prefix: str,
        codec: EntryCodec,
        serializer: BaseSerializer,
        timeout_seconds: TimeoutSeconds,
        *,
        part_codec: EntryCodec | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        self.key_prefix = validate_key_prefix(key_prefix)
        self.codec = codec
        self.part_codec = part_codec or codec
        if not 0 < max_value_bytes <= MAX_PARTS * PART_BYTES:
            raise ValueError(
                f"max_value_bytes={max_value_bytes}: must be > 0 and at most "
                f"{MAX_PARTS * PART_BYTES} ({MAX_PARTS} parts of {PART_BYTES} bytes)"
            )
        self.max_value_bytes = max_value_bytes
        #: pickle unless replaced: any cachelib serializer can be (CACHE_SERIALIZER).
        self.serializer = serializer
        self._timeout_seconds = timeout_seconds
        #: Items read but not served (untrusted, unloadable, parts missing), by reason.
        self.rejections = Rejections()

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
    ) -> NewEntry | None:
        """The signed items for ``value``, or None (logged) if it cannot be stored.

        One item when the sealed value fits; else its parts and a manifest, to be
        written in that order (:class:`NewEntry`).
        """
        entries = self.new_entries(model, (key,), value, timeout)
        return None if entries is None else entries[0]

    def new_entries(
        self,
        model: type[CacheEntry],
        keys: Sequence[str],
        value: Any,
        timeout: int | timedelta | None,
    ) -> list[NewEntry] | None:
        """:meth:`new_entry` of one ``value`` under each of ``keys`` (copies of it), serialized
        and compressed once; None (logged) if it cannot be stored."""
        key = keys[0]
        expires_ms = self.expires_ms(timeout)
        try:
            body = self.serializer.dumps(value)
        except Exception as error:  # pickle raises many types for unpicklable values
            logger.warning("cache set(%r): value not serializable: %s", key, error)
            return None
        if body is None:  # cachelib's serializers log and return None on pickling errors
            logger.warning("cache set(%r): value not serializable", key)
            return None
        skeys = [self.storage_key(each) for each in keys]
        blobs = self.codec.seal_copies(skeys, body, expires_ms)
        if len(blobs[0]) > self.max_value_bytes:
            logger.warning(
                "cache set(%r) refused: %d bytes after compression exceed "
                "CACHE_DYNAMODB_MAX_VALUE_BYTES (%d)",
                key,
                len(blobs[0]),
                self.max_value_bytes,
            )
            return None
        return [
            self._entry(model, skey, blob, expires_ms)
            for skey, blob in zip(skeys, blobs, strict=True)
        ]

    def _entry(
        self, model: type[CacheEntry], skey: str, blob: bytes, expires_ms: int | None
    ) -> NewEntry:
        """``blob`` under ``skey``: one item when it fits, else parts and their manifest."""
        size = len(blob) + len(skey.encode()) + len(self.key_prefix.encode()) + ITEM_OVERHEAD_BYTES
        if size <= MAX_ITEM_BYTES:
            return NewEntry(self.item(model, skey, expires_ms, value=blob))
        return self._in_parts(model, skey, blob, expires_ms)

    def _in_parts(
        self, model: type[CacheEntry], skey: str, blob: bytes, expires_ms: int | None
    ) -> NewEntry:
        """A blob over one item: its parts under a new write id, and the manifest naming them."""
        manifest = Manifest.for_blob(blob)
        seal_part = self.part_codec.seal
        chunks = zip(self.part_keys(manifest), split(blob), strict=True)
        part_items = [
            self.item(model, part_key, expires_ms, value=seal_part(part_key, chunk, expires_ms))
            for part_key, chunk in chunks
        ]
        signed = self.codec.seal(manifest_signing_key(skey), manifest.encode(), expires_ms)
        head = self.item(model, skey, expires_ms, value=signed, parts=manifest.count)
        return NewEntry(head, part_items)

    def counter_item(
        self, model: type[CacheEntry], skey: str, count: int, expires_ms: int | None
    ) -> CacheEntry:
        """A counter holding ``count``, with the signed marker that makes it one."""
        marker = self.codec.seal(skey, COUNTER_MARKER, expires_ms)
        return self.item(model, skey, expires_ms, counter=count, value=marker)

    def payload(self, entry: ItemAttributes) -> bytes | int | None:
        """A live entry's verified serialized body, or its counter; None if untrusted.

        A manifest's value is in its parts, which only the store can fetch: None
        here (see :meth:`manifest` and :meth:`payload_in_parts`).
        """
        if is_expired(entry) or entry.value is None or entry.parts is not None:
            return None
        try:
            body = self.codec.unseal(entry.cache_key, entry.value, entry.expires_ms)
        except InvalidEntry as error:
            self.rejections.record(entry.cache_key, BAD_SIGNATURE, str(error))
            return None
        if entry.counter is None:
            return body
        if body == COUNTER_MARKER and type(entry.counter) is int:
            return entry.counter
        self.rejections.record(entry.cache_key, NOT_A_COUNTER)
        return None

    def value_of(self, entry: ItemAttributes) -> Any:
        """The verified value of an item, or None for an expired or untrusted one."""
        return self.loads(entry.cache_key, self.payload(entry))

    def loads(self, skey: str, payload: bytes | int | None) -> Any:
        """A verified payload as the value it serializes (a counter as itself)."""
        if not isinstance(payload, bytes):
            return payload
        try:
            return self.serializer.loads(payload)
        except Exception as error:  # ours, but unloadable here (e.g. a class since renamed)
            self.rejections.record(skey, UNLOADABLE, str(error))
            return None

    # -- values in parts (parts.py) ---------------------------------------------

    def manifest(self, entry: ItemAttributes) -> Manifest | None:
        """A live manifest item's verified manifest; None if expired or untrusted (counted)."""
        if is_expired(entry) or entry.value is None or entry.parts is None:
            return None
        try:
            body = self.codec.unseal(
                manifest_signing_key(entry.cache_key), entry.value, entry.expires_ms
            )
            return Manifest.decode(body)
        except ValueError as error:  # InvalidEntry is one
            self.rejections.record(entry.cache_key, BAD_MANIFEST, str(error))
            return None

    def part_keys(self, manifest: Manifest) -> list[str]:
        return manifest.part_keys(self.key_prefix)

    def payload_in_parts(
        self, entry: ItemAttributes, manifest: Manifest, found: Mapping[str, ItemAttributes]
    ) -> bytes | None:
        """The verified serialized body the parts make, or None (logged, counted).

        Each part must be there, live and signed under its own key; together
        they must make the blob whose length and SHA-256 the signed manifest
        names; and that blob must verify as the entry's own (key and expiry).
        """
        part_keys = self.part_keys(manifest)
        bodies: dict[str, bytes] = {}
        for part_key in part_keys:
            part = found.get(part_key)
            if part is None or part.value is None or is_expired(part):
                self.rejections.record(entry.cache_key, MISSING, part_key)
                return None
            try:
                bodies[part_key] = self.part_codec.unseal(part_key, part.value, part.expires_ms)
            except InvalidEntry as error:
                self.rejections.record(entry.cache_key, BAD_PART, f"{part_key}: {error}")
                return None
        try:
            blob = joined(manifest, bodies, part_keys)
            return self.codec.unseal(entry.cache_key, blob, entry.expires_ms)
        except ValueError as error:  # InvalidEntry is one
            self.rejections.record(entry.cache_key, BAD_DIGEST, str(error))
            return None


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A value's items, ready to write: ``parts`` first, then ``item``, the key's own.

    ``item`` is the value itself, or, for a value in parts, the manifest naming
    ``parts``; written last (with any condition), it is what makes them visible.
    """

    item: CacheEntry
    parts: list[CacheEntry] = field(default_factory=list)
