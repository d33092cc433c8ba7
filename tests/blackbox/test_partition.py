"""devtools/partition.py against the session's DynamoDB Local: a partition, not a pause.

The property the coherence tests rest on: while partitioned, a call times out and
its write is *never executed* (DynamoDB Local, asked directly afterwards, does not
have it), which a SIGSTOP'd server would not give (it runs the queued request on
resume). And after heal(), new calls work.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from devtools.dynamodb_local import DynamoDBLocal
from devtools.partition import PartitionProxy

#: Short, so a timed-out call costs the test little; DynamoDB Local answers in milliseconds.
CLIENT_TIMEOUT_SECONDS = 0.5
#: Long enough for a request that reached DynamoDB Local to have been executed.
SETTLE_SECONDS = 1.0
#: A request DynamoDB Local answers (with an error: no target), proving bytes flow both ways.
RAW_HTTP_REQUEST = b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"


def dynamodb_client(endpoint_url: str) -> Any:
    """A boto3 client with short timeouts and no retries: one attempt, one answer or error."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        config=Config(
            connect_timeout=CLIENT_TIMEOUT_SECONDS,
            read_timeout=CLIENT_TIMEOUT_SECONDS,
            retries={"total_max_attempts": 1},
        ),
    )


@pytest.fixture
def proxy(dynamodb_local: DynamoDBLocal) -> Iterator[PartitionProxy]:
    with PartitionProxy(dynamodb_local.port) as running:
        yield running


@pytest.fixture
def table(dynamodb_local: DynamoDBLocal) -> Iterator[str]:
    """A table of this test's own, created and deleted straight on DynamoDB Local."""
    name = f"test-partition-{uuid.uuid4().hex[:12]}"
    direct = dynamodb_client(dynamodb_local.endpoint_url)
    direct.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield name
    direct.delete_table(TableName=name)


def put(client: Any, table: str, key: str) -> None:
    client.put_item(TableName=table, Item={"k": {"S": key}})


def stored(dynamodb_local: DynamoDBLocal, table: str, key: str) -> bool:
    """Whether DynamoDB Local itself has the item: asked directly, not through the proxy."""
    direct = dynamodb_client(dynamodb_local.endpoint_url)
    return "Item" in direct.get_item(TableName=table, Key={"k": {"S": key}}, ConsistentRead=True)


def test_traffic_flows_through_the_proxy(
    proxy: PartitionProxy, dynamodb_local: DynamoDBLocal, table: str
) -> None:
    put(dynamodb_client(proxy.endpoint_url), table, "through-the-proxy")

    assert stored(dynamodb_local, table, "through-the-proxy")
    assert proxy.counters.forwarded_connections >= 1 and proxy.counters.dropped_bytes == 0


@pytest.mark.parametrize("connection", ["new", "kept-alive"])
def test_a_write_during_a_partition_times_out_and_is_never_executed(
    proxy: PartitionProxy, dynamodb_local: DynamoDBLocal, table: str, connection: str
) -> None:
    """On a new connection (accepted, blackholed) and on one the client's pool kept open
    from before the partition (blackholed when it started)."""
    client = dynamodb_client(proxy.endpoint_url)
    if connection == "kept-alive":
        put(client, table, "before")  # leaves a pooled connection behind

    with proxy.partitioned():
        started = time.monotonic()
        with pytest.raises((ReadTimeoutError, ConnectTimeoutError)):
            put(client, table, "during")
        timed_out_after = time.monotonic() - started
        time.sleep(SETTLE_SECONDS)  # a paused server would be running it about now

    assert timed_out_after < CLIENT_TIMEOUT_SECONDS * 3
    assert not stored(dynamodb_local, table, "during")
    assert proxy.counters.dropped_bytes > 0


def test_after_heal_new_calls_work(
    proxy: PartitionProxy, dynamodb_local: DynamoDBLocal, table: str
) -> None:
    client = dynamodb_client(proxy.endpoint_url)
    put(client, table, "before")
    with proxy.partitioned(), pytest.raises((ReadTimeoutError, ConnectTimeoutError)):
        put(client, table, "during")

    put(client, table, "after")  # the same client: its pool reconnects

    assert stored(dynamodb_local, table, "after")
    assert not stored(dynamodb_local, table, "during")


def test_a_connection_blackholed_by_the_partition_is_reset_on_heal_not_resumed(
    proxy: PartitionProxy,
) -> None:
    """The documented choice: what was sent during the partition is gone for good, and the
    connection ends (a reset) rather than coming back to life with half a conversation."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
        sock.sendall(RAW_HTTP_REQUEST)
        assert sock.recv(4096).startswith(b"HTTP/1.1")  # flows before the partition

        proxy.partition()
        sock.sendall(RAW_HTTP_REQUEST)
        sock.settimeout(CLIENT_TIMEOUT_SECONDS)
        with pytest.raises(TimeoutError):
            sock.recv(4096)  # dropped, not answered
        proxy.heal()

        sock.settimeout(2)
        with pytest.raises(ConnectionResetError):
            sock.recv(4096)

    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as fresh:
        fresh.sendall(RAW_HTTP_REQUEST)
        assert fresh.recv(4096).startswith(b"HTTP/1.1")
