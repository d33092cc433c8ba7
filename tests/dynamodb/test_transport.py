"""transport.py: the circuit breaker and the timeouts bound what an outage costs."""

from __future__ import annotations

import time
from typing import Any

import botocore.loaders
import pytest

from cache_backends.dynamodb.transport import Transport
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.dynamodb import CallLog, MakeCache


def test_the_circuit_opens_then_probes_again(
    make_down_cache: MakeCache, unused_port: int, calls: CallLog
) -> None:
    cache = make_down_cache(unused_port, breaker_failures=3, breaker_cooldown=0.3)
    for _ in range(10):
        assert cache.get("k") is None
    attempted = [error for _, error in calls.calls if "circuit open" not in str(error)]
    assert len(attempted) == 3, "after 3 failures the calls are skipped"
    assert cache.health()["circuit"] == "open"
    time.sleep(0.35)
    calls.clear()
    cache.get("k")
    cache.get("k")
    assert "circuit open" not in str(calls.calls[0][1]), "one probe after the cool-down"
    assert "circuit open" in str(calls.calls[1][1]), "the probe failed: open again"


def test_a_hanging_endpoint_costs_at_most_the_configured_timeouts(
    make_down_cache: MakeCache, hanging_port: int
) -> None:
    cache = make_down_cache(hanging_port, breaker_failures=1, breaker_cooldown=60)
    started = time.monotonic()
    assert cache.get("k") is None  # waits for the 0.2 s read timeout once
    assert cache.get("k") is None  # skipped: circuit open
    assert time.monotonic() - started < 2.0, "the 30 s PynamoDB default would block far longer"


def test_the_hot_read_client_is_given_the_get_budget_and_no_retry(
    make_cache: MakeCache,
) -> None:
    transport: Transport = make_cache(
        connect_timeout=2.0, read_timeout=3.0, get_timeout=0.5, max_retries=4
    ).strict.transport

    def budget(model: type) -> tuple[float, float, int]:
        meta = model.Meta
        return meta.connect_timeout_seconds, meta.read_timeout_seconds, meta.max_retry_attempts

    assert budget(transport.model) == (2.0, 3.0, 4)
    assert budget(transport.write_once_model) == (2.0, 3.0, 0)
    assert budget(transport.hot_read_model) == (0.5, 0.5, 0)


def test_the_backend_recovers_when_dynamodb_comes_back(
    make_cache: MakeCache, table_name: str
) -> None:
    with DynamoDBLocal() as ddb:
        make_cache(endpoint_url=ddb.endpoint_url, read_timeout=10)  # a cold JVM answers slowly
        cache = make_cache(
            endpoint_url=ddb.endpoint_url,
            create_table=False,
            breaker_failures=2,
            breaker_cooldown=0.2,
            connect_timeout=0.2,
            read_timeout=0.5,
            max_retries=0,
        )
        assert cache.set("k", "before")
        ddb.stop()
        assert cache.get("k") is None
        assert cache.set("k", "during") is False
        ddb.start()  # same port, empty again: it ran in memory
        make_cache(endpoint_url=ddb.endpoint_url, read_timeout=10)  # an operator recreates it
        deadline = time.monotonic() + 10
        while not cache.set("k", "after") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cache.get("k") == "after"
        assert cache.health()["circuit"] == "closed"


def test_a_process_parses_botocores_data_files_once_for_all_its_backends(
    make_cache: MakeCache, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each backend has four clients; a botocore session of their own each (PynamoDB's
    default) would parse the endpoint and DynamoDB model files again for every one, a
    tenth of a second of CPU each in every worker at boot and in every test."""
    make_cache()  # the process's session has read what a DynamoDB client needs
    parsed: list[str] = []
    load_file = botocore.loaders.JSONFileLoader.load_file

    def counted(loader: botocore.loaders.JSONFileLoader, file_path: str) -> Any:
        parsed.append(file_path)
        return load_file(loader, file_path)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", counted)

    another = make_cache(table_name=f"{table_name}-another")
    assert another.set("k", 1) and another.get("k") == 1
    assert parsed == []
