"""The strict store: the cache's operations on DynamoDB, raising when it cannot be asked.

Each method answers what the table holds (None/False for a miss, a refused
condition, a value that cannot be stored) and raises :class:`CacheUnavailable`
when DynamoDB could not be asked. ``DynamoDBCache`` offers it as ``.strict``
for the layers that must tell "absent" from "failed" (the loader, the
near-cache, owed writes); its own ``BaseCache`` methods degrade on top of it.

A value too large for one item is written as parts, then its manifest, and
read as its manifest, then its parts (``parts.py``): every write below puts
its parts (:meth:`DynamoDBStore._write_parts`) before the key's own item, and
every read goes through :meth:`DynamoDBStore._payloads`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from pynamodb.expressions.condition import Condition

from cache_backends.codec import EntryCodec
from cache_backends.dynamodb.batch import MAX_PARTS_PER_WRITE, batch_get, batch_write
from cache_backends.dynamodb.counters import increment
from cache_backends.dynamodb.entries import EntryFormat, NewEntry, entry_from_raw, now_ms
from cache_backends.dynamodb.parts import Manifest
from cache_backends.dynamodb.transport import Transport
from cache_backends.models import KEY_ATTRIBUTE, CacheEntry, StoredItem
from cache_backends.strict import CacheUnavailable

logger = logging.getLogger(__name__)

Timeout = int | timedelta | None


def _copy_key(key: str, copy: int) -> str:
    """Where copy ``copy`` of a value written once lives: the first is the key itself."""
    return key if copy == 0 else f"{key}#{copy}"


class DynamoDBStore:
    """get/set/add/delete/inc... on one table; :class:`CacheUnavailable` on failure.

    :param consistent_read: strongly consistent GetItem/BatchGetItem.
    :param body_copies: copies :meth:`set_written_once` writes.
    """

    def __init__(
        self,
        transport: Transport,
        entries: EntryFormat,
        *,
        consistent_read: bool,
        body_copies: int = 1,
    ) -> None:
        self.transport = transport
        self.entries = entries
        self.consistent_read = consistent_read
        self.body_copies = body_copies

    @property
    def codec(self) -> EntryCodec:
        """What signs this table's entries: an instance's shared files are signed alike."""
        return self.entries.codec

    def get(self, key: str) -> Any:
        return self._get(key, self.consistent_read)

    def set_written_once(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """``set`` of a key that will never change (a region's body), in ``body_copies``
        items: ``key`` itself and ``key#1``... (parts first, then the items, in one batch),
        so that a fleet reading it at once spreads over as many items."""
        keys = [_copy_key(key, copy) for copy in range(self.body_copies)]
        entries = self.entries.new_entries(self.transport.model, keys, value, timeout)
        if entries is None:
            return False
        self._put_all(entries)
        return True

    def get_written_once(self, key: str) -> Any:
        """``get`` of a key :meth:`set_written_once` wrote: one of its copies at random,
        eventually consistent (half the read units); then ``key`` itself, strongly
        consistent, only if that found nothing (the write had not reached the replica
        that answered, or a writer with fewer copies wrote it)."""
        copy = random.randrange(self.body_copies)  # spreading load, not a secret
        value = self._get(_copy_key(key, copy), consistent_read=False)
        return value if value is not None else self.get(key)

    def _get(self, key: str, consistent_read: bool) -> Any:
        skey = self.entries.storage_key(key)
        raw = self.transport.get_item(skey, consistent_read)
        entry = None if raw is None else entry_from_raw(raw)
        if entry is None:
            return None
        return self.entries.loads(skey, self._payloads([entry], consistent_read)[0])

    def get_many(self, *keys: str) -> list[Any]:
        skeys = [self.entries.storage_key(key) for key in keys]
        unique = list(dict.fromkeys(skeys))
        found = batch_get(self.transport, unique, self.consistent_read)
        items = [found[skey] for skey in unique if skey in found]
        payloads = dict(zip((item.cache_key for item in items), self._payloads(items), strict=True))
        loads = self.entries.loads
        return [loads(skey, payloads[skey]) if skey in payloads else None for skey in skeys]

    def has(self, key: str) -> bool:
        # The whole item, not a projection: DynamoDB bills a GetItem by the
        # item's full size anyway, and only a verified entry counts as present
        # (for a value in parts, only one whose parts all verify).
        raw = self.transport.get_item(self.entries.storage_key(key), self.consistent_read)
        entry = None if raw is None else entry_from_raw(raw)
        return entry is not None and self._payloads([entry])[0] is not None

    def _payloads(
        self, items: Sequence[StoredItem], consistent_read: bool | None = None
    ) -> list[bytes | int | None]:
        """Each item's verified payload, fetching the parts of every manifest among them.

        Items of one item cost nothing more; all the manifests' parts together
        are one ``batch_get`` (a 16 MB response or throttling leaves keys
        unprocessed, which it asks again for). The parts read are only those
        each manifest names: never a listing, so never another write's.
        """
        entries = self.entries
        manifests: dict[int, Manifest] = {}
        for index, item in enumerate(items):
            if item.parts is not None and (manifest := entries.manifest(item)) is not None:
                manifests[index] = manifest
        if not manifests:
            return [entries.payload(item) for item in items]
        part_keys = [key for manifest in manifests.values() for key in entries.part_keys(manifest)]
        # The full timeouts, like get_many's: a response may carry up to 16 MB.
        if consistent_read is None:
            consistent_read = self.consistent_read
        found = batch_get(self.transport, list(dict.fromkeys(part_keys)), consistent_read)
        return [
            entries.payload_in_parts(item, manifests[index], found)
            if index in manifests
            else entries.payload(item)
            for index, item in enumerate(items)
        ]

    def set(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """False only when the value cannot be stored (unpicklable, over max_value_bytes)."""
        entry = self.entries.new_entry(self.transport.model, key, value, timeout)
        if entry is None:
            return False
        self._write_parts(entry.parts)
        self.transport.call("PutItem", entry.item.cache_key, self.transport.put, entry.item)
        return True

    def add(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """One conditional put: False when a live entry is there."""
        entry = self.entries.new_entry(self.transport.write_once_model, key, value, timeout)
        if entry is None:
            return False
        model = self.transport.model
        absent_or_expired = model.cache_key.does_not_exist() | (model.expires_ms <= now_ms())
        return self._write(entry, absent_or_expired)

    def set_many(self, mapping: Mapping[str, Any], timeout: Timeout = None) -> list[Any]:
        """The keys stored: all but those whose value cannot be.

        Large values' parts are written first, all together, then every key's
        item: no manifest is written before the parts it names.
        """
        new_entry, model = self.entries.new_entry, self.transport.model
        entries = {key: new_entry(model, key, value, timeout) for key, value in mapping.items()}
        storable = {key: entry for key, entry in entries.items() if entry is not None}
        self._put_all(list(storable.values()))
        return list(storable)

    def _put_all(self, entries: Sequence[NewEntry]) -> None:
        """Every entry's parts, all together, then their items in one batch."""
        self._write_parts([part for entry in entries for part in entry.parts])
        batch_write(self.transport, put=[entry.item for entry in entries])

    def _write_parts(self, parts: Sequence[CacheEntry]) -> None:
        """Write a large value's parts; CacheUnavailable unless every one landed.

        In pages far smaller than BatchWriteItem's 25 items (25 parts are ~10 MB,
        more than one request should carry within the read timeout), sent
        concurrently.
        """
        if parts:
            batch_write(self.transport, put=parts, page_size=MAX_PARTS_PER_WRITE)

    def _write(self, entry: NewEntry, condition: Condition) -> bool:
        """Parts first, then the key's item on ``condition``: False if refused.

        A refused manifest names parts that nobody else can ever read: they
        are deleted at once, best effort (else DynamoDB's TTL reclaims them).
        A failed manifest write raises and leaves them: it may have landed.
        """
        self._write_parts(entry.parts)
        stored = self.transport.conditional(
            "PutItem", entry.item.cache_key, self.transport.put, entry.item, condition=condition
        )
        if not stored and entry.parts:
            self._forget_parts(entry.item.cache_key, entry.parts)
        return stored

    def _forget_parts(self, skey: str, parts: Sequence[CacheEntry]) -> None:
        try:
            batch_write(self.transport, delete=[part.cache_key for part in parts])
        except CacheUnavailable:  # the transport logged it; the TTL reclaims them
            logger.info("cache %r: unreferenced parts left to their TTL", skey)

    def set_versioned(
        self,
        key: str,
        value: Any,
        rank: int,
        timeout: Timeout = None,
        expected_rank: int | None = None,
    ) -> bool:
        """``set`` unless the key holds a live item of a higher ``rank``: one conditional put.

        Beyond ``BaseCache``: the atomic step of ``cache_backends.versioned``, so
        that of two writers the one with the newer database snapshot wins on
        every instance, whatever order their puts arrive in. Equal ranks
        replace each other; items without a rank (plain ``set``) and expired
        items are always replaced. With ``expected_rank``, a compare-and-set:
        only an item that still holds exactly that rank is replaced (an update
        derived from what was read). False when refused.
        """
        model = self.transport.model  # retried: a second put of the same rank passes again
        entry = self.entries.new_entry(model, key, value, timeout)
        if entry is None:
            return False
        # Only the key's own item (a large value's manifest) carries the rank: it
        # is written last, so the condition decides which write's parts are seen.
        entry.item.rank = rank
        replaceable = (
            model.cache_key.does_not_exist()
            | model.rank.does_not_exist()
            | (model.rank <= rank)
            | (model.expires_ms <= now_ms())
        )
        if expected_rank is not None:  # compare-and-set: still the item that was read
            replaceable = (model.rank == expected_rank) & (model.rank <= rank)
        return self._write(entry, replaceable)

    def delete(self, key: str) -> bool:
        """False when there was nothing to delete."""
        skey = self.entries.storage_key(key)
        return self.transport.conditional(
            "DeleteItem",
            skey,
            self.transport.delete,
            self.transport.write_once_model,
            skey,
            condition=self.transport.model.cache_key.exists(),
        )

    def delete_many(self, *keys: str) -> list[Any]:
        """Every key, once the batch succeeds: BatchWriteItem does not say which existed."""
        skeys = list(dict.fromkeys(self.entries.storage_key(key) for key in keys))
        batch_write(self.transport, delete=skeys)
        return list(keys)

    def clear(self) -> bool:
        """Delete this cache's items: those written under its ``key_prefix``.

        Matched on the item's ``key_prefix`` attribute, not on the key's first
        characters, so clearing ``app:`` leaves ``app:v2:`` alone.
        """
        model = self.transport.model
        connection = self.transport.connection()
        key_prefix = self.entries.key_prefix
        own_items = model.prefix == key_prefix if key_prefix else None

        def scan_keys() -> list[str]:
            keys: list[str] = []
            start = None
            while True:  # a page per Scan request, until DynamoDB names no next one
                page = connection.scan(
                    filter_condition=own_items,
                    attributes_to_get=[KEY_ATTRIBUTE],
                    exclusive_start_key=start,
                )
                keys.extend(item[KEY_ATTRIBUTE]["S"] for item in page.get("Items", []))
                start = page.get("LastEvaluatedKey")
                if start is None:
                    return keys

        batch_write(
            self.transport, delete=self.transport.call("Scan", key_prefix or "*", scan_keys)
        )
        return True

    def inc(self, key: str, delta: int = 1) -> int | None:
        """Add ``delta`` atomically (see ``counters.py``); None for a non-integer."""
        return increment(self.transport, self.entries, key, delta)

    def dec(self, key: str, delta: int = 1) -> int | None:
        return self.inc(key, -delta)

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """``callback()`` when the circuit closes again (``cache_backends.strict.on_recovery``)."""
        self.transport.breaker.add_close_listener(callback)
