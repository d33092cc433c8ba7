"""admin.py: creating the table (idempotent, racing workers, DynamoDB down), recreating it."""

from __future__ import annotations

import time

import boto3
import pytest

from cache_backends.dynamodb.backend import DynamoDBCache
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.caches import TEST_SIGNING_KEY
from tests.support.dynamodb import MakeCache, flask_cache

#: DynamoDB Local creates a table in well under a second.
RECREATE_WAIT_SECONDS = 10


def test_the_table_has_ttl_enabled_on_expires_at(
    cache: DynamoDBCache, dynamodb_local: DynamoDBLocal
) -> None:
    client = boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url)
    ttl = client.describe_time_to_live(TableName=cache.table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_a_table_created_by_another_process_meanwhile_is_success(
    make_cache: MakeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gunicorn's workers start together: each sees no table, one CreateTable wins.

    The race is forced: this cache's existence check answers "absent" although
    another process (the first cache) has just created the table.
    """
    make_cache()  # the other process: creates the table
    late = make_cache(create_table=False)
    monkeypatch.setattr(late.strict.transport, "table_exists", lambda: False)

    done = late.create_table()

    assert any("created by another process" in line for line in done)
    late.set("k", "v")
    assert late.get("k") == "v"


def test_an_unreachable_dynamodb_at_start_up_does_not_stop_the_app_starting(
    make_cache: MakeCache, unused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that raised here would fail to boot, and gunicorn would stop every worker."""
    cache = make_cache(endpoint_url=f"http://127.0.0.1:{unused_port}", breaker_failures=0)

    assert cache.get("k") is None
    assert "not created at start-up" in caplog.text


def test_a_table_found_missing_is_created_again_when_the_cache_creates_its_own(
    make_cache: MakeCache, dynamodb_local: DynamoDBLocal
) -> None:
    """The transport's table-missing callback reaches the admin code (DynamoDB Local restarted)."""
    cache = make_cache(breaker_failures=0)
    boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url).delete_table(
        TableName=cache.table_name
    )

    assert cache.set("k", "lost") is False  # finds the table gone: recreated in the background
    deadline = time.monotonic() + RECREATE_WAIT_SECONDS
    while not cache.set("k", "back") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cache.get("k") == "back"


def test_check_table_and_health_report_a_missing_table(make_cache: MakeCache) -> None:
    cache = make_cache(create_table=False)

    assert cache.check_table() is False
    report = cache.health()
    assert (report["ok"], report["circuit"]) == (False, "closed")
    assert "DescribeTable failed" in report["error"]


def test_cli_create_table_is_idempotent(dynamodb_local: DynamoDBLocal, table_name: str) -> None:
    from cache_backends.cli import cache_cli

    app, _ = flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
        }
    )
    app.cli.add_command(cache_cli)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["cache", "create-table"])
    second = runner.invoke(args=["cache", "create-table"])
    assert first.exit_code == second.exit_code == 0
    assert f"created table {table_name}" in first.output
    assert "TTL is enabled on expires_at" in first.output
    assert "already exists" in second.output and "TTL is enabled" in second.output
    status = runner.invoke(args=["cache", "status"])
    assert '"ok": true' in status.output and '"circuit": "closed"' in status.output
