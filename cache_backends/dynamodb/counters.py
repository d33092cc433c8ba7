"""Counters: ``inc``/``dec`` as DynamoDB numbers, exact under any concurrency.

A live counter changes by one ``UpdateItem ADD``. A key holding a ``set()``
integer (or nothing, or an expired item) is first made a counter by a put
conditioned on what was read, so a concurrent change makes it start over
rather than lose an update. Neither write is ever retried by botocore: after
a lost response, a retried ``ADD`` would count twice.
"""

from __future__ import annotations

import logging
from typing import Any

from cache_backends.dynamodb.entries import EntryFormat, entry_from_raw, is_expired, now_ms
from cache_backends.dynamodb.transport import Transport

logger = logging.getLogger(__name__)

#: inc() on a key holding a set() value converts it with a conditional write;
#: a concurrent writer can win that race, so the whole step is retried.
COUNTER_ATTEMPTS = 5


class _NotACounter(Exception):
    """inc() met a key that holds something other than an integer."""


def increment(transport: Transport, entries: EntryFormat, key: str, delta: int) -> int | None:
    """Add ``delta`` atomically; an absent or expired counter starts from 0.

    A new counter expires after ``default_timeout``; ``ADD`` keeps an existing
    expiry. None (logged) for a key holding anything but an integer, or after
    COUNTER_ATTEMPTS lost races; :class:`CacheUnavailable` when DynamoDB fails.
    """
    if type(delta) is not int:
        logger.warning("cache inc(%r): delta %r is not an integer", key, delta)
        return None
    skey = entries.storage_key(key)
    model = transport.write_once_model
    try:
        for _ in range(COUNTER_ATTEMPTS):
            live_counter = model.counter.exists() & (
                model.expires_ms.does_not_exist() | (model.expires_ms > now_ms())
            )
            entry = model(skey)
            if transport.conditional(
                "UpdateItem",
                skey,
                transport.update,
                entry,
                actions=[model.counter.add(delta)],
                condition=live_counter,
            ):
                return entries.value_of(entry)  # ALL_NEW: verified like any read
            started = _start_counter(transport, entries, skey, delta)
            if started is not None:
                return started
    except _NotACounter:
        logger.warning("cache inc(%r): the key holds a non-integer value", key)
        return None
    logger.warning("cache inc(%r) lost %d races in a row; giving up", key, COUNTER_ATTEMPTS)
    return None


def _start_counter(transport: Transport, entries: EntryFormat, skey: str, delta: int) -> int | None:
    """Make the key a counter, from the integer it holds or 0; None if someone raced us.

    The write is conditioned on the item being exactly as read (value,
    counter and expiry), so a concurrent inc or set makes it fail and the
    caller start over instead of overwriting that change.
    """
    model = transport.write_once_model
    raw = transport.get_item(skey, consistent_read=True, hot=False)
    current = None if raw is None else entry_from_raw(raw)
    if raw is not None and current is None:
        raise _NotACounter(skey)  # malformed: no condition could guard overwriting it
    base, expires_ms = 0, entries.expires_ms(None)
    unchanged = model.cache_key.does_not_exist()
    if current is not None:
        unchanged = (
            _equal_or_absent(model.value, current.value)
            & _equal_or_absent(model.counter, current.counter)
            & _equal_or_absent(model.expires_ms, current.expires_ms)
        )
        if not is_expired(current):
            value = entries.value_of(current)
            if type(value) is not int:
                raise _NotACounter(skey)
            base, expires_ms = value, current.expires_ms
    counter = entries.counter_item(model, skey, base + delta, expires_ms)
    if not transport.conditional("PutItem", skey, transport.put, counter, condition=unchanged):
        return None
    return base + delta


def _equal_or_absent(attribute: Any, value: Any) -> Any:
    """A condition that the attribute still holds ``value`` (None: still absent)."""
    return attribute.does_not_exist() if value is None else attribute == value
