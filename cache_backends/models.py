"""The cache table's schema, as a PynamoDB model.

One item per cache key; compare with ``deploy/cloudformation.yaml``::

    cache_key   S  partition key (see keys.py for long keys)
    value       B  signed, maybe compressed, serialized value (codec.py); for
                   a counter, a signed marker that proves inc() created it
    counter     N  the value of an inc()/dec() counter, kept as a number so
                   DynamoDB can add to it atomically (UpdateItem ADD)
    expires_ms  N  epoch milliseconds: when the entry stops being served;
                   signed with the value; absent = never
    expires_at  N  epoch seconds, rounded up from expires_ms: the table's TTL
                   attribute, for DynamoDB's own (lazy) deletion
    key_prefix  S  the writing cache's key_prefix, so clear() can remove
                   exactly its own items; absent without a prefix
    version     N  set_versioned() only: the entry's rank (versioned.py: 2 x
                   fence + complete), which a conditional put compares so an
                   older write is refused; not signed, it only decides which
                   write wins. ``rank`` in Python, still ``version`` on the
                   wire: items written before the rename must keep comparing
                   during a rolling deploy (and CloudFormation need not change)
    parts       N  a large value's manifest only (parts.py): how many part items
                   hold the value; the signed manifest in ``value`` names them.
                   Each part is an item of its own under a derived key, with
                   the entry's expiry and prefix, so TTL and clear() reclaim it

DynamoDB's TTL only knows whole seconds and deletes hours to days late, so
reads go by ``expires_ms``: a one-second timeout means one second.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import botocore.session
from pynamodb.attributes import BinaryAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.connection import TableConnection
from pynamodb.connection.base import MetaTable
from pynamodb.models import Model

KEY_ATTRIBUTE = "cache_key"
VALUE_ATTRIBUTE = "value"
COUNTER_ATTRIBUTE = "counter"
EXPIRY_ATTRIBUTE = "expires_at"
EXPIRY_MS_ATTRIBUTE = "expires_ms"
PREFIX_ATTRIBUTE = "key_prefix"
#: Named before ranks were called ranks; kept so old and new releases compare alike.
RANK_ATTRIBUTE = "version"
PARTS_ATTRIBUTE = "parts"


class CacheEntry(Model):
    """Attributes shared by every cache table; :func:`entry_model_for` binds a table."""

    cache_key = UnicodeAttribute(hash_key=True, attr_name=KEY_ATTRIBUTE)
    value = BinaryAttribute(null=True, legacy_encoding=False, attr_name=VALUE_ATTRIBUTE)
    counter = NumberAttribute(null=True, attr_name=COUNTER_ATTRIBUTE)
    expires_ms = NumberAttribute(null=True, attr_name=EXPIRY_MS_ATTRIBUTE)
    expires_at = TTLAttribute(null=True, attr_name=EXPIRY_ATTRIBUTE)
    prefix = UnicodeAttribute(null=True, attr_name=PREFIX_ATTRIBUTE)
    rank = NumberAttribute(null=True, attr_name=RANK_ATTRIBUTE)
    parts = NumberAttribute(null=True, attr_name=PARTS_ATTRIBUTE)


class ItemAttributes(Protocol):
    """What reads need of an item: a CacheEntry, or a StoredItem decoded faster."""

    cache_key: str
    value: bytes | None
    counter: int | float | None
    expires_ms: int | None
    parts: int | None


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An item as read back, decoded from DynamoDB's wire format directly.

    Reads build no PynamoDB model: for get_many(100) that is a hundred model
    instances, most of the Python time of the call. The attribute names and
    types are the ones CacheEntry declares above.
    """

    cache_key: str
    value: bytes | None
    counter: int | float | None
    expires_ms: int | None
    parts: int | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Mapping[str, Any]]) -> StoredItem:
        """Decode a GetItem/BatchGetItem item; ValueError if it does not fit the schema."""
        try:
            key = raw[KEY_ATTRIBUTE]["S"]
            value = raw[VALUE_ATTRIBUTE]["B"] if VALUE_ATTRIBUTE in raw else None
            counter = _number(raw[COUNTER_ATTRIBUTE]["N"]) if COUNTER_ATTRIBUTE in raw else None
            expires = raw[EXPIRY_MS_ATTRIBUTE]["N"] if EXPIRY_MS_ATTRIBUTE in raw else None
            expires_ms = None if expires is None else int(expires)
            parts = int(raw[PARTS_ATTRIBUTE]["N"]) if PARTS_ATTRIBUTE in raw else None
        except (KeyError, TypeError) as error:
            raise ValueError(f"unexpected attribute type: {error!r}") from error
        if not isinstance(key, str) or not isinstance(value, bytes | None):
            raise ValueError("unexpected attribute type")
        return cls(key, value, counter, expires_ms, parts)


def _number(text: str) -> int | float:
    """A DynamoDB number: int when integral (counters must be), float otherwise."""
    try:
        return int(text)
    except ValueError:
        return float(text)


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the table lives and how patiently to talk to it."""

    table_name: str
    endpoint_url: str | None
    region_name: str | None
    connect_timeout: float
    read_timeout: float
    max_retries: int
    max_pool_connections: int


def entry_model_for(settings: ConnectionSettings) -> type[CacheEntry]:
    """A CacheEntry subclass bound to one table and endpoint.

    Its ``Meta`` carries the table, the endpoint and the timeouts; every call
    on the table goes through :func:`table_connection` of the class, and a
    class per backend instance (and per budget) keeps two caches from sharing
    a connection.
    """

    class Meta:
        table_name = settings.table_name
        host = settings.endpoint_url
        region = settings.region_name
        connect_timeout_seconds = settings.connect_timeout
        read_timeout_seconds = settings.read_timeout
        max_retry_attempts = settings.max_retries
        max_pool_connections = settings.max_pool_connections

    return type(f"CacheEntry_{settings.table_name}", (CacheEntry,), {"Meta": Meta})


#: The table's key, for CreateTable and for the connection's idea of the table
#: (PynamoDB's own names: ``AttributeName``, ``KeyType``, ``AttributeType``).
KEY_SCHEMA = [{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}]
ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": KEY_ATTRIBUTE, "AttributeType": CacheEntry.cache_key.attr_type}
]

#: One TableConnection per model class, made on first use (see table_connection).
_connections: weakref.WeakKeyDictionary[type[CacheEntry], TableConnection] = (
    weakref.WeakKeyDictionary()
)
_connections_lock = threading.Lock()


def table_connection(model: type[CacheEntry]) -> TableConnection:
    """The connection every call on ``model``'s table goes through: one per class.

    Built from the class's ``Meta`` with the settings PynamoDB's own models
    use (region, host, connect/read timeouts, retries, pool size, extra
    headers, credentials) and the table's key schema, so no call needs a
    DescribeTable first. Its botocore client (``.connection.client``) is made
    with it, from the process's one botocore session, and every connection is
    dropped after fork(): a worker makes its own, never inheriting the master's
    sockets. Made under a lock, so that two threads' first calls get (and hook)
    the same client.
    """
    connection = _connections.get(model)
    if connection is None:
        with _connections_lock:
            connection = _connections.get(model)
            if connection is None:
                connection = _connections[model] = _connect(model)
    return connection


def _connect(model: type[CacheEntry]) -> TableConnection:
    meta = model.Meta
    connection = TableConnection(
        meta.table_name,
        region=meta.region,
        host=meta.host,
        connect_timeout_seconds=meta.connect_timeout_seconds,
        read_timeout_seconds=meta.read_timeout_seconds,
        max_retry_attempts=meta.max_retry_attempts,
        max_pool_connections=meta.max_pool_connections,
        extra_headers=meta.extra_headers,
        aws_access_key_id=meta.aws_access_key_id,
        aws_secret_access_key=meta.aws_secret_access_key,
        aws_session_token=meta.aws_session_token,
        meta_table=MetaTable(
            {
                "TableName": meta.table_name,
                "KeySchema": KEY_SCHEMA,
                "AttributeDefinitions": ATTRIBUTE_DEFINITIONS,
                "GlobalSecondaryIndexes": [],
                "LocalSecondaryIndexes": [],
            }
        ),
    )
    # PynamoDB would give this connection a botocore session of its own (one per thread),
    # and each new session parses botocore's endpoint and DynamoDB model files again:
    # 0.1-0.2 s of CPU per client, four clients per backend, in every worker at boot.
    # One session per process instead, its clients made here, under the lock: a botocore
    # session is not thread-safe, the clients it makes are.
    connection.connection._local.session = _process_session()
    connection.connection.client  # noqa: B018 (made now, from that session)
    return connection


#: The process's botocore session, for every connection's client (see _connect).
_session: botocore.session.Session | None = None


def _process_session() -> botocore.session.Session:
    global _session
    if _session is None:
        _session = botocore.session.get_session()
    return _session


def _drop_connections_after_fork() -> None:
    """botocore clients and their sockets do not survive fork(): reconnect lazily."""
    global _connections_lock
    global _session
    _connections_lock = threading.Lock()  # another thread may have held it at fork()
    _connections.clear()
    _session = None  # its credentials' refresh state is the parent's


os.register_at_fork(after_in_child=_drop_connections_after_fork)
