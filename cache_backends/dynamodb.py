"""A Flask-Caching backend that keeps entries in one DynamoDB table.

Select it with ``CACHE_TYPE = "cache_backends.dynamodb.DynamoDBCache"``; the
class docstring below is the manual. The table layout is in ``models.py``, the
entry format (signature, compression) in ``codec.py``, the key mapping in
``keys.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError
from cachelib.serializers import BaseSerializer
from flask_caching.backends.base import BaseCache
from pynamodb.exceptions import PynamoDBException

from cache_backends.breaker import CircuitBreaker
from cache_backends.codec import DEFAULT_COMPRESS_THRESHOLD, EntryCodec, InvalidEntry
from cache_backends.keys import storage_key, validate_key_prefix
from cache_backends.models import (
    EXPIRY_ATTRIBUTE,
    KEY_ATTRIBUTE,
    CacheEntry,
    ConnectionSettings,
    ItemAttributes,
    StoredItem,
    entry_model_for,
)

logger = logging.getLogger(__name__)

DEFAULT_TABLE_NAME = "ecommerce-cache"
#: DynamoDB limits, in items per request.
MAX_BATCH_GET = 100
MAX_BATCH_WRITE = 25
#: DynamoDB's item size limit. Attribute names count towards it too.
MAX_ITEM_BYTES = 400 * 1024
#: Room for attribute names, the two expiry numbers and DynamoDB's per-item overhead.
ITEM_OVERHEAD_BYTES = 128
#: datetime (and so PynamoDB's TTLAttribute) ends at 9999-12-31; longer timeouts are capped.
MAX_EPOCH_SECONDS = 253_402_300_799
#: Unprocessed batch keys/items are retried this many times, with exponential
#: backoff and full jitter starting at BATCH_BACKOFF_BASE seconds, capped at
#: BATCH_BACKOFF_CAP; what is still unprocessed then counts as a failure.
BATCH_RETRY_ATTEMPTS = 5
BATCH_BACKOFF_BASE = 0.025
BATCH_BACKOFF_CAP = 0.5
#: Extra pages of one get_many/set_many/delete_many sent at once beside the
#: caller's own; a few turn N round trips into about one within the HTTP pool.
MAX_CONCURRENT_PAGES = 4
#: Seconds a get/get_many/has may take, connect and read together, with no retry.
#: DynamoDB answers a GetItem in single-digit milliseconds in a region.
DEFAULT_GET_TIMEOUT = 0.1
#: inc() on a key holding a set() value converts it with a conditional write;
#: a concurrent writer can win that race, so the whole step is retried.
COUNTER_ATTEMPTS = 5
#: What a counter item's ``value`` holds, signed: proof that inc() made it.
COUNTER_MARKER = b"\x00dynamodb-cache-counter"
CONDITION_FAILED = "ConditionalCheckFailedException"
TABLE_MISSING = "ResourceNotFoundException"
TABLE_IN_USE = "ResourceInUseException"
#: With create_table=True, a table found missing (DynamoDB Local restarted empty) is
#: created again in the background, at most this often.
RECREATE_INTERVAL_SECONDS = 10.0

#: ``observer(operation, seconds, error)`` hears about every DynamoDB call.
Observer = Callable[[str, float, BaseException | None], None]
T = TypeVar("T")


class CacheUnavailable(Exception):
    """A DynamoDB call failed, or was skipped because the circuit is open."""


class _NotACounter(Exception):
    """inc() met a key that holds something other than an integer."""


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(BATCH_BACKOFF_CAP, BATCH_BACKOFF_BASE * 2**attempt)))


def _setting(config: Mapping[str, Any], name: str, kind: type[T], default: T) -> T:
    """``config[name]`` if it has the right type; else a start-up error naming it.

    Not ``bool(value)``/``float(value)``: an environment string such as
    "False" (not JSON, so Flask keeps it a string) would silently become True.
    """
    value = config.get(name, default)
    if isinstance(value, bool) != (kind is bool):
        raise ValueError(f"{name} must be {kind.__name__}, not {type(value).__name__}")
    if kind is float and isinstance(value, int):
        return float(value)  # type: ignore[return-value]
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _old_signing_keys(config: Mapping[str, Any]) -> list[str]:
    """CACHE_DYNAMODB_OLD_SIGNING_KEYS as a list: one key alone is a list of one.

    A bare string must not be iterated: each of its characters would become a
    one-character key that anyone could sign forged entries with.
    """
    keys = config.get("CACHE_DYNAMODB_OLD_SIGNING_KEYS") or []
    if isinstance(keys, str):
        return [keys]
    if isinstance(keys, list | tuple) and all(isinstance(key, str) and key for key in keys):
        return list(keys)
    raise ValueError("CACHE_DYNAMODB_OLD_SIGNING_KEYS must be a JSON list of non-empty strings")


def _error_code(error: Exception) -> str | None:
    """DynamoDB's error code behind a PynamoDB or botocore exception, if it answered."""
    # Not PynamoDB's cause_response_code: it raises when the cause is a read
    # timeout, whose ``response`` attribute is None.
    cause = getattr(error, "cause", None) or error
    response = getattr(cause, "response", None) or {}
    code: str | None = response.get("Error", {}).get("Code")
    return code


def _is_condition_failure(error: Exception) -> bool:
    """A failed condition is an answer from DynamoDB, not an outage."""
    return _error_code(error) == CONDITION_FAILED


def _degrades_to(fallback: Callable[..., Any]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Turn a :class:`CacheUnavailable` into ``fallback(*args)``: the cache never raises."""

    def decorate(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def wrapper(self: DynamoDBCache, *args: Any, **kwargs: Any) -> T:
            try:
                return method(self, *args, **kwargs)
            except CacheUnavailable:
                return fallback(*args)

        return wrapper

    return decorate


_miss = _degrades_to(lambda *args: None)
_failed = _degrades_to(lambda *args: False)


class DynamoDBCache(BaseCache):
    """Flask-Caching backend storing each entry as one item of a DynamoDB table.

    Drop-in for ``cachelib.dynamodb.DynamoDbCache`` where the arguments overlap;
    it differs where that one falls short: batched ``get_many``/``set_many``/
    ``delete_many``, atomic ``inc``/``dec``, a conditional ``add``, ``clear``
    limited to ``key_prefix``, keys of any length, compressed and signed values,
    short timeouts with a circuit breaker, and no exception ever escaping.
    One method beyond ``BaseCache``: :meth:`set_versioned`, a put that never
    replaces a newer version (used by ``cache_backends.loader``).

    Flask configuration (read by :meth:`factory`):

    ====================================  ==========================================
    ``CACHE_DYNAMODB_TABLE``              table name (``ecommerce-cache``)
    ``CACHE_DYNAMODB_REGION``             region; default: the AWS chain
    ``CACHE_DYNAMODB_ENDPOINT_URL``       e.g. DynamoDB Local's URL; default: AWS
    ``CACHE_DYNAMODB_CREATE_TABLE``       create the table at start-up (local runs)
    ``CACHE_DYNAMODB_SIGNING_KEY``        HMAC key; falls back to ``SECRET_KEY``
    ``CACHE_DYNAMODB_OLD_SIGNING_KEYS``   list of keys still accepted on reads
    ``CACHE_DYNAMODB_CONSISTENT_READ``    strongly consistent reads (``True``)
    ``CACHE_DYNAMODB_CONNECT_TIMEOUT``    seconds (``1.0``)
    ``CACHE_DYNAMODB_READ_TIMEOUT``       seconds (``1.0``)
    ``CACHE_DYNAMODB_GET_TIMEOUT``        seconds for get and has (``0.1``)
    ``CACHE_DYNAMODB_MAX_RETRIES``        botocore retries per call (``1``)
    ``CACHE_DYNAMODB_MAX_POOL``           HTTP connections per process (``32``)
    ``CACHE_DYNAMODB_BREAKER_FAILURES``   failures that open the circuit (``5``)
    ``CACHE_DYNAMODB_BREAKER_COOLDOWN``   seconds the circuit stays open (``10``)
    ``CACHE_DYNAMODB_OBSERVER``           callable for metrics (set in code)
    ``CACHE_DEFAULT_TIMEOUT``             default TTL in seconds (``300``)
    ``CACHE_KEY_PREFIX``                  prefix of every key
    ====================================  ==========================================

    Credentials and, unless given, the region come from the standard AWS chain
    (environment, shared profile, EC2 instance role); nothing here takes keys.

    :param table_name: the cache table (layout in ``cache_backends/models.py``).
    :param default_timeout: seconds an entry lives when ``set`` gets
        ``timeout=None``; ``0`` means never expire.
    :param key_prefix: prepended to every key; ``clear()`` removes only items
        with this prefix.
    :param endpoint_url: talk to this endpoint instead of AWS (DynamoDB Local).
    :param region_name: AWS region; default from the AWS chain.
    :param create_table: create the table (on-demand, TTL on ``expires_at``) if
        it does not exist, at start-up and again (in the background) whenever a
        call finds it gone. For local runs: production tables come from
        CloudFormation (``deploy/cloudformation.yaml``).
    :param signing_key: HMAC-SHA256 key; required, and the same on every
        instance (a per-process key would make each reject the others' entries).
    :param old_signing_keys: keys still accepted when reading. To rotate: deploy
        with the new ``signing_key`` and the old one here; remove it once the
        longest TTL has passed.
    :param consistent_read: strongly consistent reads (2x the read cost) so that
        a write on one instance is what the next read anywhere sees.
    :param connect_timeout: seconds to open a connection.
    :param read_timeout: seconds to wait for a response (writes, admin calls).
    :param get_timeout: connect and read timeout of ``get`` and ``has``, tried
        once: they sit on the request path, where the database is the
        fallback, so a hung DynamoDB must cost a request about this, not more.
        ``get_many`` keeps the full timeouts: a page may carry 16 MB.
    :param max_retries: botocore retries per idempotent call (standard mode;
        DynamoDB's backoff starts at 25 ms). A write costs at most about
        ``(1 + max_retries) * (connect_timeout + read_timeout)`` when DynamoDB
        hangs, a read ``get_timeout``, and nothing once the circuit is open. Conditional writes and
        ``inc`` are never retried: a retry after a lost response would apply
        an ``ADD`` twice, or report a stored ``add`` as refused.
    :param max_pool_connections: HTTP connections kept per process; at least the
        worker's thread count.
    :param breaker_failures: consecutive failed calls that open the circuit;
        while open, calls are skipped (a miss / ``False``) for
        ``breaker_cooldown`` seconds, then one probe call tries again. ``0``
        disables the breaker.
    :param breaker_cooldown: seconds the circuit stays open.
    :param compress_threshold: serialized values at least this many bytes are
        zlib-compressed when that makes them smaller.
    :param observer: ``observer(operation, seconds, error)`` is called after
        each DynamoDB call (``error`` is ``None`` on success), for metrics.

    IAM permissions on the table's ARN: ``dynamodb:GetItem``, ``PutItem``,
    ``UpdateItem``, ``DeleteItem``, ``BatchGetItem``, ``BatchWriteItem``,
    ``DescribeTable`` (start-up check and ``health()``), ``Scan`` (only for
    ``clear()``); ``CreateTable``, ``UpdateTimeToLive`` and
    ``DescribeTimeToLive`` only where ``create_table()`` runs.

    Cost and limits:

    - a hit is one ``GetItem``: 1 read unit per 4 KB strongly consistent, half
      that eventually consistent; ``get_many`` reads 100 keys per
      ``BatchGetItem``, ``set_many``/``delete_many`` write 25 per
      ``BatchWriteItem``; writes cost 1 unit per 1 KB, which compression helps;
    - an item holds at most 400 KB: a value still larger after compression is
      refused (``set`` returns ``False`` and logs a warning);
    - keys over DynamoDB's 2048-byte key limit are stored under a SHA-256
      digest (``keys.py``);
    - DynamoDB deletes expired items lazily (hours to days later) and its TTL
      knows only seconds; every read goes by the signed millisecond expiry, so
      an item past it is absent (``models.py``);
    - ``clear()`` scans the whole table (billed for every item scanned, not
      only those deleted) and deletes the prefix's items 25 at a time: an
      administrative operation, not one for the request path;
    - ``inc``/``dec`` counters are DynamoDB numbers so that ``UpdateItem ADD``
      changes them atomically; a signed marker beside the number proves that
      ``inc`` created the item (so nobody can plant a counter), but the number
      itself cannot be signed: whoever can write to the table can change it;
    - ``inc`` whose response is lost (read timeout) returns ``None`` although
      DynamoDB may have applied it: at most once, never twice;
    - ``add`` only overwrites an absent or expired item: an item that fails
      verification (forged, or signed with a retired key) blocks it until it
      expires, while ``get``/``has`` already treat it as absent;
    - ``delete_many`` reports every key as deleted once the batch succeeds
      (``BatchWriteItem`` does not say which keys existed) and never raises,
      whatever ``ignore_delete_many_errors`` says.
    """

    serializer = BaseSerializer()  # pickle; any cachelib serializer can replace it

    def __init__(
        self,
        table_name: str = DEFAULT_TABLE_NAME,
        default_timeout: int = 300,
        key_prefix: str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        create_table: bool = False,
        *,
        signing_key: str | bytes | None = None,
        old_signing_keys: Iterable[str | bytes] = (),
        consistent_read: bool = True,
        connect_timeout: float = 1.0,
        read_timeout: float = 1.0,
        get_timeout: float = DEFAULT_GET_TIMEOUT,
        max_retries: int = 1,
        max_pool_connections: int = 32,
        breaker_failures: int = 5,
        breaker_cooldown: float = 10.0,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        observer: Observer | None = None,
        ignore_delete_many_errors: bool = True,
    ) -> None:
        super().__init__(default_timeout, ignore_delete_many_errors=ignore_delete_many_errors)
        if not signing_key:
            raise ValueError(
                "DynamoDBCache needs a signing_key (Flask: CACHE_DYNAMODB_SIGNING_KEY), the same "
                "on every instance, so that entries can be verified before they are loaded"
            )
        self.table_name = table_name
        self.key_prefix = validate_key_prefix(key_prefix or "")
        self.consistent_read = consistent_read
        self.observer = observer
        self._codec = EntryCodec(signing_key, old_signing_keys, compress_threshold)
        self._breaker = CircuitBreaker(
            f"DynamoDB table {table_name}", breaker_failures, breaker_cooldown
        )
        settings = ConnectionSettings(
            table_name=table_name,
            endpoint_url=endpoint_url,
            region_name=region_name,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_retries=max_retries,
            max_pool_connections=max_pool_connections,
        )
        self._model = entry_model_for(settings)
        # Conditional writes and ADD are not idempotent: they go out exactly once.
        self._write_once_model = entry_model_for(dataclasses.replace(settings, max_retries=0))
        # get/has sit on the request path, where the database is the fallback: one
        # short attempt, so a hung DynamoDB costs a request get_timeout, not
        # (1 + retries) x (connect + read) timeouts. (get_many keeps the full ones:
        # a BatchGetItem page may carry 16 MB.)
        self._hot_read_model = entry_model_for(
            dataclasses.replace(
                settings,
                connect_timeout=min(connect_timeout, get_timeout),
                read_timeout=get_timeout,
                max_retries=0,
            )
        )
        self._last_call = threading.local()
        # Build the botocore clients now (no network): ~0.1 s each that the first
        # get or the first invalidating delete would otherwise pay on a request.
        for model in (self._model, self._write_once_model, self._hot_read_model):
            model._get_connection().connection.client  # noqa: B018
        self._creates_table = create_table
        self._recreate_lock = threading.Lock()
        self._recreating = False
        self._last_recreate = -RECREATE_INTERVAL_SECONDS
        if create_table:
            try:
                self._create_table_and_log()
            except (PynamoDBException, BotoCoreError, ClientError) as error:
                # A cache that is down must not stop the app from starting (a gunicorn
                # worker failing to boot takes the whole server down): the first call
                # that finds the table missing creates it in the background.
                logger.warning(
                    "cache table %s not created at start-up, retried when DynamoDB answers: %s",
                    table_name,
                    error,
                )

    @classmethod
    def factory(
        cls,
        app: Any,
        config: Mapping[str, Any],
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> DynamoDBCache:
        """Build the backend from Flask config (Flask-Caching calls this at init_app)."""
        signing_key = config.get("CACHE_DYNAMODB_SIGNING_KEY") or config.get("SECRET_KEY")
        if not signing_key:
            raise ValueError(
                "CACHE_DYNAMODB_SIGNING_KEY is not set (nor SECRET_KEY): set the same secret on "
                "every instance, e.g. FLASK_CACHE_DYNAMODB_SIGNING_KEY=<random 32+ bytes>"
            )
        kwargs.update(
            table_name=config.get("CACHE_DYNAMODB_TABLE", DEFAULT_TABLE_NAME),
            key_prefix=config.get("CACHE_KEY_PREFIX"),
            endpoint_url=config.get("CACHE_DYNAMODB_ENDPOINT_URL"),
            region_name=config.get("CACHE_DYNAMODB_REGION"),
            create_table=_setting(config, "CACHE_DYNAMODB_CREATE_TABLE", bool, False),
            signing_key=signing_key,
            old_signing_keys=_old_signing_keys(config),
            consistent_read=_setting(config, "CACHE_DYNAMODB_CONSISTENT_READ", bool, True),
            connect_timeout=_setting(config, "CACHE_DYNAMODB_CONNECT_TIMEOUT", float, 1.0),
            read_timeout=_setting(config, "CACHE_DYNAMODB_READ_TIMEOUT", float, 1.0),
            get_timeout=_setting(config, "CACHE_DYNAMODB_GET_TIMEOUT", float, DEFAULT_GET_TIMEOUT),
            max_retries=_setting(config, "CACHE_DYNAMODB_MAX_RETRIES", int, 1),
            max_pool_connections=_setting(config, "CACHE_DYNAMODB_MAX_POOL", int, 32),
            breaker_failures=_setting(config, "CACHE_DYNAMODB_BREAKER_FAILURES", int, 5),
            breaker_cooldown=_setting(config, "CACHE_DYNAMODB_BREAKER_COOLDOWN", float, 10.0),
            observer=config.get("CACHE_DYNAMODB_OBSERVER"),
        )
        cache = cls(*args, **kwargs)
        # A server's start-up is checked, not a `flask` command's (Flask's CLI builds the
        # app inside a click context): `cache status` reports the table's state and
        # `cache create-table` fixes it, so an ERROR saying it is missing would be noise.
        if not kwargs["create_table"] and click.get_current_context(silent=True) is None:
            cache.check_table()
        return cache

    # -- the BaseCache API -------------------------------------------------

    @_miss
    def get(self, key: str) -> Any:
        entry = self._get_entry(self._storage_key(key))
        return None if entry is None else self._value_of(entry)

    @_degrades_to(lambda *keys: [None] * len(keys))
    def get_many(self, *keys: str) -> list[Any]:
        skeys = [self._storage_key(key) for key in keys]
        found = self._batch_get(list(dict.fromkeys(skeys)))
        return [self._value_of(found[skey]) if skey in found else None for skey in skeys]

    @_failed
    def has(self, key: str) -> bool:
        # The whole item, not a projection: DynamoDB bills a GetItem by the
        # item's full size anyway, and only a verified entry counts as present.
        entry = self._get_entry(self._storage_key(key))
        return entry is not None and self._payload(entry) is not None

    @_failed
    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        entry = self._new_entry(key, value, timeout)
        if entry is None:
            return False
        self._call("PutItem", entry.cache_key, entry.save)
        return True

    @_failed
    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        entry = self._new_entry(key, value, timeout, model=self._write_once_model)
        if entry is None:
            return False
        model = self._model
        absent_or_expired = model.cache_key.does_not_exist() | (model.expires_ms <= _now_ms())
        try:
            self._call("PutItem", entry.cache_key, entry.save, condition=absent_or_expired)
        except PynamoDBException:  # the condition failed: a live entry is there
            return False
        return True

    @_degrades_to(lambda *args: [])
    def set_many(self, mapping: Mapping[str, Any], timeout: int | None = None) -> list[Any]:
        entries = {key: self._new_entry(key, value, timeout) for key, value in mapping.items()}
        stored = [key for key, entry in entries.items() if entry is not None]
        self._batch_write(put=[entries[key] for key in stored])
        return stored

    @_failed
    def set_versioned(
        self,
        key: str,
        value: Any,
        version: int,
        timeout: int | None = None,
        expected_version: int | None = None,
    ) -> bool:
        """``set`` unless the key holds a live item of a higher ``version``: one conditional put.

        Beyond ``BaseCache``: the atomic step of ``cache_backends.versioned``, so
        that of two writers the one with the newer database snapshot wins on
        every instance, whatever order their puts arrive in. Equal versions
        replace each other; items without a version (plain ``set``) and expired
        items are always replaced. With ``expected_version``, a compare-and-set:
        only an item that still holds exactly that version is replaced (an
        update derived from what was read). False when refused or on failure.
        """
        entry = self._new_entry(key, value, timeout)
        if entry is None:
            return False
        entry.version = version
        model = self._model  # retried: a second put of the same version passes again
        replaceable = (
            model.cache_key.does_not_exist()
            | model.version.does_not_exist()
            | (model.version <= version)
            | (model.expires_ms <= _now_ms())
        )
        if expected_version is not None:  # compare-and-set: still the item that was read
            replaceable = (model.version == expected_version) & (model.version <= version)
        try:
            self._call("PutItem", entry.cache_key, entry.save, condition=replaceable)
        except PynamoDBException:  # the condition failed: a newer version is there
            return False
        return True

    @_failed
    def delete(self, key: str) -> bool:
        skey = self._storage_key(key)
        try:
            self._call(
                "DeleteItem",
                skey,
                self._write_once_model(skey).delete,
                condition=self._model.cache_key.exists(),
            )
        except PynamoDBException:  # the condition failed: there was nothing to delete
            return False
        return True

    @_degrades_to(lambda *keys: [])
    def delete_many(self, *keys: str) -> list[Any]:
        self._batch_write(delete=list(dict.fromkeys(self._storage_key(key) for key in keys)))
        return list(keys)

    @_failed
    def clear(self) -> bool:
        """Delete this cache's items: those written under its ``key_prefix``.

        Matched on the item's ``key_prefix`` attribute, not on the key's first
        characters, so clearing ``app:`` leaves ``app:v2:`` alone.
        """
        model = self._model
        own_items = model.prefix == self.key_prefix if self.key_prefix else None

        def scan_keys() -> list[str]:
            return [
                entry.cache_key
                for entry in model.scan(own_items, attributes_to_get=[KEY_ATTRIBUTE])
            ]

        self._batch_write(delete=self._call("Scan", self.key_prefix or "*", scan_keys))
        return True

    @_miss
    def inc(self, key: str, delta: int = 1) -> int | None:
        """Add ``delta`` atomically; an absent or expired counter starts from 0.

        A live counter is changed by one ``UpdateItem ADD`` (exact under any
        concurrency). A key holding a ``set()`` integer is first converted to a
        counter by a write conditioned on what was read, so a concurrent change
        makes it retry rather than lose an update. A new counter expires after
        ``default_timeout``; ``ADD`` keeps an existing expiry. A key holding
        anything but an integer is left alone: ``None``.
        """
        if type(delta) is not int:
            logger.warning("cache inc(%r): delta %r is not an integer", key, delta)
            return None
        skey = self._storage_key(key)
        model = self._write_once_model
        try:
            for _ in range(COUNTER_ATTEMPTS):
                live_counter = model.counter.exists() & (
                    model.expires_ms.does_not_exist() | (model.expires_ms > _now_ms())
                )
                entry = model(skey)
                try:
                    self._call(
                        "UpdateItem",
                        skey,
                        entry.update,
                        actions=[model.counter.add(delta)],
                        condition=live_counter,
                    )
                    return self._value_of(entry)  # ALL_NEW: verified like any read
                except PynamoDBException:  # not a live counter (yet)
                    pass
                started = self._start_counter(skey, delta)
                if started is not None:
                    return started
        except _NotACounter:
            logger.warning("cache inc(%r): the key holds a non-integer value", key)
            return None
        logger.warning("cache inc(%r) lost %d races in a row; giving up", key, COUNTER_ATTEMPTS)
        return None

    def dec(self, key: str, delta: int = 1) -> int | None:
        return self.inc(key, -delta)

    def last_call_failed(self) -> bool:
        """Whether this thread's latest DynamoDB call failed (or the open circuit skipped it).

        Beyond ``BaseCache``: ``get`` answers None for a miss and for an outage
        alike; a caller that would otherwise take a lease and write (the loader)
        asks this to go straight to the database instead.
        """
        return bool(getattr(self._last_call, "failed", False))

    # -- administration ----------------------------------------------------

    def create_table(self) -> list[str]:
        """Create the table (on-demand) and enable TTL if needed; say what was done.

        Idempotent. ``UpdateTimeToLive`` may take up to an hour on AWS and is
        refused while in progress or once enabled: both count as success. The
        caller reports the lines (``flask cache create-table`` prints them, a
        start-up logs them), so each appears once.
        """
        model = self._model
        done = []
        if model.exists():
            done.append(f"table {self.table_name} already exists")
        else:
            try:
                model.create_table(billing_mode="PAY_PER_REQUEST", wait=False)
                done.append(f"created table {self.table_name} (on-demand)")
            except PynamoDBException as error:
                # Several gunicorn workers starting at once all find the table missing;
                # one CreateTable wins and the others wait for its table.
                if _error_code(error) != TABLE_IN_USE:
                    raise
                done.append(f"table {self.table_name} was created by another process")
            self._client().get_waiter("table_exists").wait(
                TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
        ttl = self._client().describe_time_to_live(TableName=self.table_name)
        status = ttl["TimeToLiveDescription"].get("TimeToLiveStatus", "DISABLED")
        if status in ("ENABLED", "ENABLING"):
            done.append(f"TTL is {status.lower()} on {EXPIRY_ATTRIBUTE}")
        else:
            try:
                model._get_connection().update_time_to_live(EXPIRY_ATTRIBUTE)
                done.append(f"enabled TTL on {EXPIRY_ATTRIBUTE}")
            except PynamoDBException as error:
                if "already enabled" not in str(error.cause_response_message or ""):
                    raise
                done.append(f"TTL is enabled on {EXPIRY_ATTRIBUTE}")
        return done

    def _create_table_and_log(self) -> None:
        for line in self.create_table():
            logger.info("cache table: %s", line)

    def _table_missing(self) -> None:
        """Create the table again, in the background, if this cache creates its own.

        Only with ``create_table=True`` (local runs): a DynamoDB Local restarted
        in memory comes back empty, and hits must resume without an app restart.
        Production tables come from CloudFormation and are never created here.
        """
        if not self._creates_table:
            return
        with self._recreate_lock:
            now = time.monotonic()
            if self._recreating or now - self._last_recreate < RECREATE_INTERVAL_SECONDS:
                return
            self._recreating, self._last_recreate = True, now
        threading.Thread(
            target=self._recreate_table, name="cache-recreate-table", daemon=True
        ).start()

    def _recreate_table(self) -> None:
        logger.warning("cache table %s is missing: creating it again", self.table_name)
        try:
            self._create_table_and_log()
        except (PynamoDBException, BotoCoreError, ClientError):
            logger.exception("cache table %s could not be created again", self.table_name)
        finally:
            with self._recreate_lock:
                self._recreating = False

    def check_table(self) -> bool:
        """Start-up check: log loudly if the table is missing or unreachable."""
        try:
            exists = self._model.exists()
        except (PynamoDBException, BotoCoreError, ClientError) as error:
            logger.warning("cache table %s unreachable at start-up: %s", self.table_name, error)
            return False
        if not exists:
            logger.error(
                "cache table %s does not exist: every read will miss; create it with "
                "`flask --app wsgi cache create-table` or deploy/cloudformation.yaml",
                self.table_name,
            )
        return exists

    def health(self) -> dict[str, Any]:
        """The cache's state for readiness reports: one DescribeTable, or none if open."""
        report: dict[str, Any] = {"backend": "dynamodb", "table": self.table_name}
        try:
            description = self._call("DescribeTable", "-", self._model.describe_table)
            report.update(ok=True, table_status=description.get("TableStatus"))
        except CacheUnavailable as error:
            report.update(ok=False, error=str(error))
        report["circuit"] = self._breaker.state.value
        return report

    # -- internals ---------------------------------------------------------

    def _client(self) -> Any:
        """The model's botocore client, for the admin calls PynamoDB does not wrap."""
        return self._model._get_connection().connection.client

    def _storage_key(self, key: str) -> str:
        return storage_key(self.key_prefix, key)

    def _call(
        self, operation: str, key: str, func: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Call DynamoDB through the circuit breaker, timing it for the observer.

        A failed condition passes through as PynamoDB raised it (it is an
        answer, not an outage); any other DynamoDB or network error is logged
        once and becomes :class:`CacheUnavailable`.
        """
        self._last_call.failed = True  # until this call is known to have worked
        if not self._breaker.allow():
            skipped = CacheUnavailable(f"{operation} skipped: circuit open")
            self._observe(operation, 0.0, skipped)
            raise skipped
        call_started = time.monotonic()
        started = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except (PynamoDBException, BotoCoreError, ClientError) as error:
            elapsed = time.perf_counter() - started
            if _is_condition_failure(error):
                self._breaker.record_success(call_started)
                self._observe(operation, elapsed, None)
                self._last_call.failed = False
                raise
            self._breaker.record_failure(call_started)
            self._observe(operation, elapsed, error)
            logger.warning(
                "DynamoDB %s on %s (key %r) failed: %s", operation, self.table_name, key, error
            )
            if _error_code(error) == TABLE_MISSING:
                self._table_missing()
            raise CacheUnavailable(f"{operation} failed: {error}") from error
        except BaseException as error:
            # Not DynamoDB's fault (a bug, an interrupt): the breaker must still hear
            # back, or a probe that ended here would leave it half-open for good.
            self._breaker.record_success(call_started)
            self._observe(operation, time.perf_counter() - started, error)
            raise
        self._breaker.record_success(call_started)
        self._observe(operation, time.perf_counter() - started, None)
        self._last_call.failed = False
        return result

    def _get_raw(
        self, skey: str, consistent_read: bool, *, hot: bool = True
    ) -> dict[str, Any] | None:
        """One GetItem: the item as DynamoDB returned it, or None.

        ``hot``: on the request path, within ``get_timeout`` and without retry.
        """
        model = self._hot_read_model if hot else self._model
        response = self._call(
            "GetItem",
            skey,
            model._get_connection().get_item,
            skey,
            consistent_read=consistent_read,
        )
        return response.get("Item")

    def _get_entry(self, skey: str) -> StoredItem | None:
        """One GetItem; None when the item is absent or malformed."""
        raw = self._get_raw(skey, self.consistent_read)
        return None if raw is None else self._entry_from_raw(raw)

    @staticmethod
    def _entry_from_raw(raw: dict[str, Any]) -> StoredItem | None:
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

    def _observe(self, operation: str, seconds: float, error: BaseException | None) -> None:
        if self.observer is None:
            return
        try:
            self.observer(operation, seconds, error)
        except Exception:  # metrics must never break the cache
            logger.exception("cache observer failed")

    def _expires_ms(self, timeout: int | None) -> int | None:
        """Epoch milliseconds when an entry set now with ``timeout`` stops being served."""
        seconds = self._normalize_timeout(timeout)
        if seconds <= 0:
            return None
        return min(_now_ms() + seconds * 1000, MAX_EPOCH_SECONDS * 1000)

    def _item(
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

    def _new_entry(
        self, key: str, value: Any, timeout: int | None, model: type[CacheEntry] | None = None
    ) -> CacheEntry | None:
        """A signed item for ``value``, or None (logged) if it cannot be stored."""
        skey = self._storage_key(key)
        expires_ms = self._expires_ms(timeout)
        try:
            body = self.serializer.dumps(value)
        except Exception as error:  # pickle raises many types for unpicklable values
            logger.warning("cache set(%r): value not serializable: %s", key, error)
            return None
        if body is None:  # cachelib's serializers log and return None on pickling errors
            logger.warning("cache set(%r): value not serializable", key)
            return None
        blob = self._codec.seal(skey, body, expires_ms)
        size = len(blob) + len(skey.encode()) + len(self.key_prefix.encode()) + ITEM_OVERHEAD_BYTES
        if size > MAX_ITEM_BYTES:
            logger.warning(
                "cache set(%r) refused: %d bytes after compression exceed DynamoDB's 400 KB item "
                "limit",
                key,
                len(blob),
            )
            return None
        return self._item(model or self._model, skey, expires_ms, value=blob)

    @staticmethod
    def _is_expired(entry: ItemAttributes) -> bool:
        return entry.expires_ms is not None and entry.expires_ms <= _now_ms()

    def _payload(self, entry: ItemAttributes) -> bytes | int | None:
        """A live entry's verified serialized body, or its counter; None if untrusted."""
        if self._is_expired(entry) or entry.value is None:
            return None
        try:
            body = self._codec.unseal(entry.cache_key, entry.value, entry.expires_ms)
        except InvalidEntry as error:
            logger.warning("cache entry %r rejected, not loaded: %s", entry.cache_key, error)
            return None
        if entry.counter is None:
            return body
        if body == COUNTER_MARKER and type(entry.counter) is int:
            return entry.counter
        logger.warning("cache entry %r rejected: not a counter inc() made", entry.cache_key)
        return None

    def _value_of(self, entry: ItemAttributes) -> Any:
        """The verified value of an item, or None for an expired or untrusted one."""
        payload = self._payload(entry)
        if not isinstance(payload, bytes):
            return payload
        try:
            return self.serializer.loads(payload)
        except Exception as error:  # ours, but unloadable here (e.g. a class since renamed)
            logger.warning("cache entry %r could not be loaded: %s", entry.cache_key, error)
            return None

    def _start_counter(self, skey: str, delta: int) -> int | None:
        """Make the key a counter, from the integer it holds or 0; None if someone raced us.

        The write is conditioned on the item being exactly as read (value,
        counter and expiry), so a concurrent inc or set makes it fail and the
        caller start over instead of overwriting that change.
        """
        model = self._write_once_model
        raw = self._get_raw(skey, consistent_read=True, hot=False)
        current = None if raw is None else self._entry_from_raw(raw)
        if raw is not None and current is None:
            raise _NotACounter(skey)  # malformed: no condition could guard overwriting it
        base, expires_ms = 0, self._expires_ms(None)
        unchanged = model.cache_key.does_not_exist()
        if current is not None:
            unchanged = (
                _equal_or_absent(model.value, current.value)
                & _equal_or_absent(model.counter, current.counter)
                & _equal_or_absent(model.expires_ms, current.expires_ms)
            )
            if not self._is_expired(current):
                value = self._value_of(current)
                if type(value) is not int:
                    raise _NotACounter(skey)
                base, expires_ms = value, current.expires_ms
        counter = self._item(
            model,
            skey,
            expires_ms,
            counter=base + delta,
            value=self._codec.seal(skey, COUNTER_MARKER, expires_ms),
        )
        try:
            self._call("PutItem", skey, counter.save, condition=unchanged)
        except PynamoDBException:
            return None
        return base + delta

    def _batch_get(self, skeys: list[str]) -> dict[str, StoredItem]:
        """BatchGetItem in pages of 100; what DynamoDB leaves unprocessed is asked again.

        On the full timeouts, not get_timeout: a page may carry up to 16 MB.
        """
        connection = self._model._get_connection()
        found: dict[str, StoredItem] = {}

        def get_page(pending: list[str]) -> list[str]:
            response = self._call(
                "BatchGetItem",
                f"{len(pending)} keys",
                connection.batch_get_item,
                [{KEY_ATTRIBUTE: skey} for skey in pending],
                consistent_read=self.consistent_read,
            )
            for raw in response.get("Responses", {}).get(self.table_name, []):
                entry = self._entry_from_raw(raw)
                if entry is not None:
                    found[entry.cache_key] = entry  # one dict store: atomic under the GIL
            unprocessed = response.get("UnprocessedKeys", {}).get(self.table_name) or {}
            return [key[KEY_ATTRIBUTE]["S"] for key in unprocessed.get("Keys", [])]

        self._send_pages("BatchGetItem", skeys, MAX_BATCH_GET, get_page)
        return found

    def _batch_write(self, put: Sequence[CacheEntry] = (), delete: Sequence[str] = ()) -> None:
        """BatchWriteItem in requests of 25; unprocessed items are sent again."""
        connection = self._model._get_connection()
        requests = [{"PutRequest": {"Item": entry.serialize()}} for entry in put] + [
            {"DeleteRequest": {"Key": {KEY_ATTRIBUTE: {"S": skey}}}} for skey in delete
        ]

        def write_page(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
            response = self._call(
                "BatchWriteItem",
                f"{len(pending)} items",
                connection.batch_write_item,
                put_items=[r["PutRequest"]["Item"] for r in pending if "PutRequest" in r],
                delete_items=[r["DeleteRequest"]["Key"] for r in pending if "DeleteRequest" in r],
            )
            return response.get("UnprocessedItems", {}).get(self.table_name) or []

        self._send_pages("BatchWriteItem", requests, MAX_BATCH_WRITE, write_page)

    @staticmethod
    def _send_pages(
        operation: str, items: Sequence[T], page_size: int, send: Callable[[list[T]], list[T]]
    ) -> None:
        """Send ``items`` in pages, concurrently; ``send`` returns what was left unprocessed.

        Unprocessed items (DynamoDB's answer to throttling or a 16 MB response)
        are retried with exponential backoff and full jitter; still unprocessed
        after BATCH_RETRY_ATTEMPTS, the whole operation counts as failed. The
        caller sends the first page itself and a pool of its own sends the rest
        at the same time: on AWS each page is a network round trip, and a pool
        per call means one slow request never queues behind another's pages.
        """

        def send_page(page: Sequence[T]) -> None:
            pending = list(page)
            for attempt in range(BATCH_RETRY_ATTEMPTS + 1):
                if attempt:
                    _backoff(attempt)
                pending = send(pending)
                if not pending:
                    return
            raise CacheUnavailable(f"{operation} left {len(pending)} items unprocessed")

        first, *rest = list(_chunks(items, page_size)) or [[]]
        if not rest:
            if first:
                send_page(first)
            return
        pool = ThreadPoolExecutor(
            max_workers=min(len(rest), MAX_CONCURRENT_PAGES), thread_name_prefix="cache-pages"
        )
        try:
            futures = [pool.submit(send_page, page) for page in rest]
            send_page(first)
            for future in futures:
                future.result()  # re-raises a page's CacheUnavailable here
        finally:
            # On failure, pages not yet started are dropped and the caller does not
            # wait for those in flight (each is bounded by the client's timeouts).
            pool.shutdown(wait=False, cancel_futures=True)


def _equal_or_absent(attribute: Any, value: Any) -> Any:
    """A condition that the attribute still holds ``value`` (None: still absent)."""
    return attribute.does_not_exist() if value is None else attribute == value


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ttl_attribute(expires_ms: int | None) -> datetime | None:
    """The TTL attribute's value: whole seconds, rounded up so DynamoDB never deletes early."""
    if expires_ms is None:
        return None
    return datetime.fromtimestamp(math.ceil(expires_ms / 1000), UTC)
