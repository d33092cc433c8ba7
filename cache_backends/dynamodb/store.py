"""The strict store: the cache's operations on DynamoDB, raising when it cannot be asked.

Each method answers what the table holds (None/False for a miss, a refused
condition, a value that cannot be stored) and raises :class:`CacheUnavailable`
when DynamoDB could not be asked. ``DynamoDBCache`` offers it as ``.strict``
for the layers that must tell "absent" from "failed" (the loader, the
near-cache, owed writes); its own ``BaseCache`` methods degrade on top of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cache_backends.dynamodb.batch import batch_get, batch_write
from cache_backends.dynamodb.counters import increment
from cache_backends.dynamodb.entries import EntryFormat, entry_from_raw, now_ms
from cache_backends.dynamodb.transport import Transport
from cache_backends.models import KEY_ATTRIBUTE

Timeout = int | timedelta | None


class DynamoDBStore:
    """get/set/add/delete/inc... on one table; :class:`CacheUnavailable` on failure.

    :param consistent_read: strongly consistent GetItem/BatchGetItem.
    """

    def __init__(
        self, transport: Transport, entries: EntryFormat, *, consistent_read: bool
    ) -> None:
        self.transport = transport
        self.entries = entries
        self.consistent_read = consistent_read

    def get(self, key: str) -> Any:
        raw = self.transport.get_item(self.entries.storage_key(key), self.consistent_read)
        entry = None if raw is None else entry_from_raw(raw)
        return None if entry is None else self.entries.value_of(entry)

    def get_many(self, *keys: str) -> list[Any]:
        skeys = [self.entries.storage_key(key) for key in keys]
        found = batch_get(self.transport, list(dict.fromkeys(skeys)), self.consistent_read)
        value_of = self.entries.value_of
        return [value_of(found[skey]) if skey in found else None for skey in skeys]

    def has(self, key: str) -> bool:
        # The whole item, not a projection: DynamoDB bills a GetItem by the
        # item's full size anyway, and only a verified entry counts as present.
        raw = self.transport.get_item(self.entries.storage_key(key), self.consistent_read)
        entry = None if raw is None else entry_from_raw(raw)
        return entry is not None and self.entries.payload(entry) is not None

    def set(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """False only when the value cannot be stored (unpicklable, over 400 KB)."""
        entry = self.entries.new_entry(self.transport.model, key, value, timeout)
        if entry is None:
            return False
        self.transport.call("PutItem", entry.cache_key, entry.save)
        return True

    def add(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """One conditional put: False when a live entry is there."""
        entry = self.entries.new_entry(self.transport.write_once_model, key, value, timeout)
        if entry is None:
            return False
        model = self.transport.model
        absent_or_expired = model.cache_key.does_not_exist() | (model.expires_ms <= now_ms())
        return self.transport.conditional(
            "PutItem", entry.cache_key, entry.save, condition=absent_or_expired
        )

    def set_many(self, mapping: Mapping[str, Any], timeout: Timeout = None) -> list[Any]:
        """The keys stored: all but those whose value cannot be."""
        new_entry, model = self.entries.new_entry, self.transport.model
        items = {key: new_entry(model, key, value, timeout) for key, value in mapping.items()}
        storable = {key: item for key, item in items.items() if item is not None}
        batch_write(self.transport, put=list(storable.values()))
        return list(storable)

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
        entry.rank = rank
        replaceable = (
            model.cache_key.does_not_exist()
            | model.rank.does_not_exist()
            | (model.rank <= rank)
            | (model.expires_ms <= now_ms())
        )
        if expected_rank is not None:  # compare-and-set: still the item that was read
            replaceable = (model.rank == expected_rank) & (model.rank <= rank)
        return self.transport.conditional(
            "PutItem", entry.cache_key, entry.save, condition=replaceable
        )

    def delete(self, key: str) -> bool:
        """False when there was nothing to delete."""
        skey = self.entries.storage_key(key)
        return self.transport.conditional(
            "DeleteItem",
            skey,
            self.transport.write_once_model(skey).delete,
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
        key_prefix = self.entries.key_prefix
        own_items = model.prefix == key_prefix if key_prefix else None

        def scan_keys() -> list[str]:
            return [
                entry.cache_key
                for entry in model.scan(own_items, attributes_to_get=[KEY_ATTRIBUTE])
            ]

        batch_write(
            self.transport, delete=self.transport.call("Scan", key_prefix or "*", scan_keys)
        )
        return True

    def inc(self, key: str, delta: int = 1) -> int | None:
        """Add ``delta`` atomically (see ``counters.py``); None for a non-integer."""
        return increment(self.transport, self.entries, key, delta)

    def dec(self, key: str, delta: int = 1) -> int | None:
        return self.inc(key, -delta)
