"""What an instance's processes share on DynamoDB Local: each body is read once per instance.
Each "process" is a Region on a DynamoDBCache of its own (its own connections, as a gunicorn
worker has); an instance is the processes that share a folder. Calls are counted on
botocore's wire."""

from __future__ import annotations

from pathlib import Path

from cache_backends.region import Region
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.caches import local_dynamodb_cache, record_dynamodb_calls

KEY = "prices"
PRICES = {"tea": 350, "coffee": 420}


class Database:
    """The prices at version 1; counts its loads."""

    def __init__(self) -> None:
        self.loads = 0

    def load(self) -> tuple[dict[str, int], int]:
        self.loads += 1
        return PRICES, 1

    def version(self) -> int:
        return 1


def process(
    database: Database, endpoint_url: str, table_name: str, instance: Path | None
) -> tuple[Region, list[str]]:
    """One worker of ``instance`` (None: a worker that shares nothing), and its wire log."""
    cache = local_dynamodb_cache(endpoint_url, table_name)
    region = Region(
        cache,
        KEY,
        load=database.load,
        database_version=database.version,
        ttl=300,
        instance_dir=instance,
    )
    return region, record_dynamodb_calls(cache)


def test_a_body_is_read_once_per_instance_and_never_by_its_writers_instance(
    dynamodb_local: DynamoDBLocal, table_name: str, tmp_path: Path
) -> None:
    database = Database()
    endpoint = dynamodb_local.endpoint_url
    writer, _ = process(database, endpoint, table_name, tmp_path / "instance-a")
    assert writer.get().value == PRICES  # loaded, stored: its body published to instance A
    assert database.loads == 1

    same_instance, its_calls = process(database, endpoint, table_name, tmp_path / "instance-a")
    assert same_instance.get().value == PRICES
    assert its_calls == ["GetItem"], "the writer's instance read the body back"

    first, first_calls = process(database, endpoint, table_name, tmp_path / "instance-b")
    second, second_calls = process(database, endpoint, table_name, tmp_path / "instance-b")
    assert first.get().value == PRICES
    assert second.get().value == PRICES
    assert first_calls == ["GetItem", "GetItem"]  # the pointer, then the body
    assert second_calls == ["GetItem"], "a second process of the instance read the body"

    alone, alone_calls = process(database, endpoint, table_name, None)
    assert alone.get().value == PRICES
    assert alone_calls == ["GetItem", "GetItem"]  # sharing nothing: the body too
    assert database.loads == 1
