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

DynamoDB's TTL only knows whole seconds and deletes hours to days late, so
reads go by ``expires_ms``: a one-second timeout means one second.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

from pynamodb.attributes import BinaryAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.models import Model

KEY_ATTRIBUTE = "cache_key"
EXPIRY_ATTRIBUTE = "expires_at"
EXPIRY_MS_ATTRIBUTE = "expires_ms"
PREFIX_ATTRIBUTE = "key_prefix"


class CacheEntry(Model):
    """Attributes shared by every cache table; :func:`entry_model_for` binds a table."""

    cache_key = UnicodeAttribute(hash_key=True, attr_name=KEY_ATTRIBUTE)
    value = BinaryAttribute(null=True, legacy_encoding=False)
    counter = NumberAttribute(null=True)
    expires_ms = NumberAttribute(null=True, attr_name=EXPIRY_MS_ATTRIBUTE)
    expires_at = TTLAttribute(null=True, attr_name=EXPIRY_ATTRIBUTE)
    prefix = UnicodeAttribute(null=True, attr_name=PREFIX_ATTRIBUTE)


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the table lives and how patiently to talk to it."""

    table_name: str
    endpoint_url: str | None = None
    region_name: str | None = None
    connect_timeout: float = 1.0
    read_timeout: float = 1.0
    max_retries: int = 1
    max_pool_connections: int = 32


#: Every model class made here, so their connections can be dropped after fork().
_live_models: weakref.WeakSet[type[CacheEntry]] = weakref.WeakSet()


def entry_model_for(settings: ConnectionSettings) -> type[CacheEntry]:
    """A CacheEntry subclass bound to one table and endpoint.

    PynamoDB caches its connection on the model class, so two caches sharing
    one class would share a table and an endpoint. A class per backend
    instance keeps them apart.
    """

    class Meta:
        table_name = settings.table_name
        host = settings.endpoint_url
        region = settings.region_name
        connect_timeout_seconds = settings.connect_timeout
        read_timeout_seconds = settings.read_timeout
        max_retry_attempts = settings.max_retries
        max_pool_connections = settings.max_pool_connections

    model = type(f"CacheEntry_{settings.table_name}", (CacheEntry,), {"Meta": Meta})
    _live_models.add(model)
    return model


def _drop_connections_after_fork() -> None:
    """botocore clients and their sockets do not survive fork(): reconnect lazily."""
    for model in list(_live_models):
        model._connection = None


os.register_at_fork(after_in_child=_drop_connections_after_fork)
