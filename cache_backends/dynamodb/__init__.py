"""A Flask-Caching backend that keeps entries in one DynamoDB table.

Select it with ``CACHE_TYPE = "cache_backends.dynamodb.DynamoDBCache"``;
``DynamoDBCache``'s docstring (``backend.py``) is the manual. One job per module:

- ``settings.py``: every ``CACHE_DYNAMODB_*`` setting, once (standard library only);
- ``backend.py``: the ``BaseCache`` edge, which degrades an outage to a miss;
- ``store.py``: the strict store behind it (``.strict``), which raises instead;
- ``entries.py``: the item format (signed, compressed, expiring);
- ``parts.py``: values larger than one item, as parts named by one manifest;
- ``batch.py``, ``counters.py``: batched reads and writes; atomic ``inc``;
- ``transport.py``: client models, circuit breaker, the ``dynamodb_call`` signal, the guarded call;
- ``admin.py``: create and check the table, report its health.

The table layout is in ``cache_backends/models.py``, the signature and
compression in ``codec.py``, the key mapping in ``keys.py``.

Importing the package loads nothing else: the names below are imported on first
use (PEP 562), so ``ecommerce/config.py`` can read ``settings`` without loading
pynamodb, botocore or Flask-Caching.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cache_backends.dynamodb.backend import DynamoDBCache
    from cache_backends.dynamodb.settings import DEFAULT_GET_TIMEOUT, DynamoDBSettings
    from cache_backends.strict import CacheUnavailable

#: Each public name, and the module it comes from.
_PUBLIC_NAMES = {
    "DynamoDBCache": "cache_backends.dynamodb.backend",
    "DynamoDBSettings": "cache_backends.dynamodb.settings",
    "DEFAULT_GET_TIMEOUT": "cache_backends.dynamodb.settings",
    "CacheUnavailable": "cache_backends.strict",
}

__all__ = ["DEFAULT_GET_TIMEOUT", "CacheUnavailable", "DynamoDBCache", "DynamoDBSettings"]


def __getattr__(name: str) -> Any:
    try:
        module = _PUBLIC_NAMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
