"""Smoke test for ``python -m benchmarks``: it runs end to end and writes what docs expect.

Tiny round counts on the session's DynamoDB Local; the numbers are never judged
here (a test that asserted speed would fail on any busy CI machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.contenders import CONTENDER_FACTORIES
from benchmarks.operations import OPERATIONS, TARGETS
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.benchmark_runs import run_benchmark_once

#: Enough to exercise warm-up, two measured rounds and the per-round ratios.
SMOKE_ARGS = ["--rounds", "2", "--iterations", "3"]
LATENCY_FIELDS = {"median_ms", "p90_ms", "min_ms", "mean_ms", "calls", "round_medians_ms"}


@pytest.fixture(scope="module")
def benchmark_output(
    dynamodb_local: DynamoDBLocal, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One run shared by the tests below: the run is the slow part."""
    return run_benchmark_once(main, SMOKE_ARGS, dynamodb_local, tmp_path_factory, "benchmarks")


def test_json_has_every_operation_contender_and_target(benchmark_output: Path) -> None:
    document = json.loads((benchmark_output / "benchmarks.json").read_text())

    assert set(document["contenders"]) == set(CONTENDER_FACTORIES)
    assert list(document["operations"]) == [operation.name for operation in OPERATIONS]
    for name, operation in document["operations"].items():
        expected_contenders = (
            {"ours", "cachelib", "bare"} if name == "get" else {"ours", "cachelib"}
        )
        assert set(operation["latency"]) == expected_contenders
        for stats in operation["latency"].values():
            assert set(stats) == LATENCY_FIELDS
            assert stats["calls"] == 2 * operation["calls_per_round"]
            assert len(stats["round_medians_ms"]) == 2
            assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"]
        assert "ours/cachelib" in operation["ratios"]
    assert [target["description"] for target in document["targets"]] == [
        target.description for target in TARGETS
    ]
    assert all(isinstance(target["met"], bool) for target in document["targets"])
    assert document["parameters"]["rounds"] == 2
    assert document["parameters"]["batch_iterations"] == 1
    assert document["server"]["started_by_benchmark"] is False
    assert document["versions"]["botocore"]


def test_markdown_shows_both_tables(benchmark_output: Path) -> None:
    page = (benchmark_output / "benchmarks.md").read_text()

    assert "| get_many(100) |" in page
    assert "get: ours <= 1.15x bare GetItem" in page
    assert "benchmarks.png" not in page  # --no-chart: no dangling image link
