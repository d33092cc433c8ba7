"""Fixtures of the DynamoDB backend's tests: backends on the test's own table in DynamoDB Local."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from cache_backends import signals
from cache_backends.dynamodb.backend import DynamoDBCache
from devtools.dynamodb_local import DynamoDBLocal
from devtools.ports import free_port
from tests.support.caches import (
    RELAXED_GET_TIMEOUT_SECONDS,
    RELAXED_WRITE_TIMEOUT_SECONDS,
    TEST_SIGNING_KEY,
)
from tests.support.dynamodb import CallLog, MakeCache
from tests.support.servers import hanging_server

#: Short enough that a test of an unreachable DynamoDB takes a fraction of a second.
UNREACHABLE_TIMEOUT_SECONDS = 0.2


@pytest.fixture
def calls() -> Iterator[CallLog]:
    """Every DynamoDB call the test's backends make, heard on ``signals.dynamodb_call``."""
    log = CallLog()
    with signals.dynamodb_call.connected_to(log):
        yield log


@pytest.fixture
def raw_table(dynamodb_local: DynamoDBLocal, table_name: str) -> Any:
    """The cache table seen through plain boto3, as an attacker or operator would."""
    return boto3.resource("dynamodb", endpoint_url=dynamodb_local.endpoint_url).Table(table_name)


@pytest.fixture
def make_cache(dynamodb_local: DynamoDBLocal, table_name: str, calls: CallLog) -> MakeCache:
    """Build backends on this test's table (created by the first one)."""

    def make(**options: Any) -> DynamoDBCache:
        options.setdefault("table_name", table_name)
        options.setdefault("endpoint_url", dynamodb_local.endpoint_url)
        options.setdefault("region_name", "us-east-1")
        options.setdefault("signing_key", TEST_SIGNING_KEY)
        options.setdefault("create_table", True)
        options.setdefault("get_timeout", RELAXED_GET_TIMEOUT_SECONDS)
        options.setdefault("write_timeout", RELAXED_WRITE_TIMEOUT_SECONDS)
        return DynamoDBCache(**options)

    return make


@pytest.fixture
def cache(make_cache: MakeCache, calls: CallLog) -> DynamoDBCache:
    backend = make_cache(key_prefix="test:")
    calls.clear()
    return backend


@pytest.fixture
def make_down_cache(make_cache: MakeCache) -> MakeCache:
    """``make_down_cache(port, **options)``: a backend on a port where DynamoDB does not answer."""

    def make(port: int, **options: Any) -> DynamoDBCache:
        return make_cache(
            endpoint_url=f"http://127.0.0.1:{port}",
            create_table=False,
            connect_timeout=UNREACHABLE_TIMEOUT_SECONDS,
            read_timeout=UNREACHABLE_TIMEOUT_SECONDS,
            max_retries=0,
            **options,
        )

    return make


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    with hanging_server() as port:
        yield port
