"""The contenders: one small adapter per cache, all answering the same calls.

The runner never knows which cache it is timing; it calls ``get``, ``set``,
``get_many``, ``set_many`` and ``inc`` on a ``Contender`` and only times the
operations listed in its ``operations``. Each contender gets its own table on
the same DynamoDB Local, so no contender ever reads another's items and every
one pays the same server, the same network stack and the same JVM.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import botocore.session

from devtools.credentials import DEV_SIGNING_KEY

#: The region every client signs with; DynamoDB Local (``-sharedDb``) ignores it.
REGION = "us-east-1"
#: cachelib's hash key attribute; the bare client's table uses the same name and type.
KEY_ATTRIBUTE = "cache_key"
#: The bare client's value attribute (binary, like the other two store their values).
VALUE_ATTRIBUTE = "value"
#: cachelib's default; both caches then write items that expire the same way.
DEFAULT_TIMEOUT_SECONDS = 300

#: Names the runner, the report and the targets refer to.
OURS = "ours"
CACHELIB = "cachelib"
BARE = "bare"

#: Every operation a full cache answers (see ``benchmarks.operations``).
CACHE_OPERATIONS = frozenset({"get", "set", "get_many(100)", "set_many(100)", "inc"})


def dynamodb_client(endpoint_url: str) -> Any:
    """A plain botocore DynamoDB client with default settings, as a user would create one."""
    return botocore.session.get_session().create_client(
        "dynamodb", endpoint_url=endpoint_url, region_name=REGION
    )


class Contender(ABC):
    """One cache under test, seen through the BaseCache calls the benchmark times."""

    #: Short name used as a key in the JSON and in ratio names ("ours/cachelib").
    name: str
    #: What the table and the chart call it.
    label: str
    #: The operations this contender is timed on; the others are not its job.
    operations: frozenset[str]

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @abstractmethod
    def get(self, key: str) -> Any: ...

    @abstractmethod
    def set(self, key: str, value: Any) -> Any: ...

    def get_many(self, keys: Sequence[str]) -> Any:
        raise NotImplementedError(f"{self.label} is not timed on get_many")

    def set_many(self, mapping: Mapping[str, Any]) -> Any:
        raise NotImplementedError(f"{self.label} is not timed on set_many")

    def inc(self, key: str) -> Any:
        raise NotImplementedError(f"{self.label} is not timed on inc")

    def decoded(self, result: Any) -> Any:
        """What a timed call's result means as a cache value, for checking it untimed.

        Caches already return values; the bare client returns the raw item, which
        is decoded here so that decoding never counts against the floor.
        """
        return result


class CacheContender(Contender):
    """A BaseCache (ours or cachelib's): the benchmark calls its public API as an app would."""

    operations = CACHE_OPERATIONS

    def __init__(self, name: str, label: str, cache: Any, table_name: str) -> None:
        super().__init__(table_name)
        self.name = name
        self.label = label
        self.cache = cache

    def get(self, key: str) -> Any:
        return self.cache.get(key)

    def set(self, key: str, value: Any) -> Any:
        return self.cache.set(key, value)

    def get_many(self, keys: Sequence[str]) -> Any:
        return self.cache.get_many(*keys)

    def set_many(self, mapping: Mapping[str, Any]) -> Any:
        return self.cache.set_many(dict(mapping))

    def inc(self, key: str) -> Any:
        return self.cache.inc(key)


def _cache_contender(
    name: str, label: str, cache_class: Any, endpoint_url: str, table_name: str, **options: Any
) -> Contender:
    """Both caches get the same table, endpoint, region and TTL; ``options`` are their own."""
    cache = cache_class(
        table_name=table_name,
        endpoint_url=endpoint_url,
        region_name=REGION,
        default_timeout=DEFAULT_TIMEOUT_SECONDS,
        **options,
    )
    return CacheContender(name, label, cache, table_name)


def make_ours(endpoint_url: str, table_name: str) -> Contender:
    """Our DynamoDBCache with its defaults (strongly consistent reads, signed entries)."""
    from cache_backends.dynamodb import DynamoDBCache

    return _cache_contender(
        OURS,
        "ours (DynamoDBCache)",
        DynamoDBCache,
        endpoint_url,
        table_name,
        create_table=True,
        # Ours refuses to run unsigned; the dev key keeps the HMAC cost in the measurement.
        signing_key=DEV_SIGNING_KEY,
    )


def make_cachelib(endpoint_url: str, table_name: str) -> Contender:
    """cachelib's DynamoDbCache with its defaults (eventually consistent reads, own table)."""
    # Imported on use: cachelib is a dev extra, never needed by the app itself.
    from cachelib.dynamodb import DynamoDbCache

    return _cache_contender(
        CACHELIB, "cachelib DynamoDbCache", DynamoDbCache, endpoint_url, table_name
    )


class BareGetItem(Contender):
    """The floor for a hit: one botocore GetItem, strongly consistent like ours, no decoding."""

    name = BARE
    label = "bare GetItem"
    operations = frozenset({"get"})

    def __init__(self, endpoint_url: str, table_name: str) -> None:
        super().__init__(table_name)
        self.client = dynamodb_client(endpoint_url)
        self.client.create_table(
            TableName=table_name,
            AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.client.get_waiter("table_exists").wait(TableName=table_name)

    def get(self, key: str) -> Any:
        response = self.client.get_item(
            TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": key}}, ConsistentRead=True
        )
        return response.get("Item")

    def set(self, key: str, value: Any) -> Any:
        """Write the pickled value, the same bytes cachelib stores, as the item to read back."""
        self.client.put_item(
            TableName=self.table_name,
            Item={KEY_ATTRIBUTE: {"S": key}, VALUE_ATTRIBUTE: {"B": pickle.dumps(value)}},
        )
        return True

    def decoded(self, result: Any) -> Any:
        return None if result is None else pickle.loads(result[VALUE_ATTRIBUTE]["B"])


#: How to build each contender on an endpoint, in the order the table shows them.
CONTENDER_FACTORIES: dict[str, Callable[[str, str], Contender]] = {
    OURS: make_ours,
    CACHELIB: make_cachelib,
    BARE: BareGetItem,
}
