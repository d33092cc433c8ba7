"""``python -m benchmarks.scale``: the catalogue, the cached-view yardstick, targets, a tiny run.

The run uses the session's DynamoDB Local, two tiny sizes, one-second loads and two
contenders (the app on DynamoDB with the near-cache, and nginx serving the file): its
numbers are never judged, only that every cell was measured and answered as it should.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.http.cached_view import create_app
from benchmarks.http.catalogue import build_catalogue, catalogue_representation
from benchmarks.http.scale import GZIP, PLAIN, judge
from benchmarks.http.wrk import parse_bytes_read
from benchmarks.scale import main
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.benchmark_runs import run_benchmark_once

#: Small enough to build in a moment, large enough that gzip makes the body smaller.
TINY_CATALOGUE = 50
SMOKE_SIZES = (3, TINY_CATALOGUE)
SMOKE_CONTENDERS = ("dynamodb-near", "nginx-static")
SMOKE_ARGS = [
    *("--categories", ",".join(map(str, SMOKE_SIZES))),
    *("--only", ",".join(SMOKE_CONTENDERS)),
    *("--duration", "1"),
    *("--warmup", "1"),
    *("--dynamodb-warmup", "1"),
    *("--connections", "4"),
    *("--workers", "1"),
]


@pytest.mark.parametrize(
    ("line", "expected"),
    [("4.64MB", 4_865_393), ("512.00B", 512), ("1.50KB", 1_536), ("2.00GB", 2 * 1024**3)],
)
def test_wrk_bytes_read_are_read_in_binary_units(line: str, expected: int) -> None:
    assert parse_bytes_read(f"  12172 requests in 3.00s, {line} read\n") == expected


def test_the_catalogue_holds_the_seeds_and_then_generated_categories(tmp_path: Path) -> None:
    catalogue = build_catalogue(tmp_path, TINY_CATALOGUE)

    categories = catalogue_representation(catalogue).decoded()
    assert [category["id"] for category in categories] == list(range(1, TINY_CATALOGUE + 1))
    assert [category["name"] for category in categories[:4]] == [
        "Electronics",
        "Clothing",
        "Books",
        "Category 000004",
    ]


def test_the_cached_view_sends_the_apps_bytes_from_its_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = build_catalogue(tmp_path, TINY_CATALOGUE)
    expected = catalogue_representation(catalogue).identity_body
    monkeypatch.setenv("FLASK_SQLALCHEMY_DATABASE_URI", f"sqlite:///{catalogue}")
    client = create_app().test_client()

    first = client.get("/categories")
    catalogue.unlink()  # the second answer can only come from Flask-Caching's cache
    second = client.get("/categories", headers={"Accept-Encoding": "gzip"})

    assert first.status_code == second.status_code == 200
    assert first.data == second.data == expected
    assert "Content-Encoding" not in second.headers  # @cache.cached never compresses


def _cell(requests_per_second: float, bytes_per_response: float = 1000.0) -> dict[str, Any]:
    return {"requests_per_second": requests_per_second, "bytes_per_response": bytes_per_response}


def _size(
    categories: int, near: float, plain_near: float, dynamodb: float, hit: str = "HIT"
) -> dict[str, Any]:
    return {
        "categories": categories,
        "identity_bytes": 100_000,
        "summary": {
            "dynamodb-near": {GZIP: _cell(near, 10_000.0), PLAIN: _cell(plain_near)},
            "dynamodb": {
                GZIP: _cell(dynamodb) | {"cache_hit_share": 1.0},
                PLAIN: _cell(dynamodb) | {"cache_hit_share": 1.0},
            },
            "simplecache": {PLAIN: _cell(1000.0)},
        },
        "probes": {
            "dynamodb": {
                PLAIN: {"status": 200, "x_cache": hit},
                GZIP: {"status": 200, "x_cache": hit},
            }
        },
    }


def test_the_issues_targets_are_judged_pass_or_miss() -> None:
    sizes = {
        "3": _size(3, near=1000.0, plain_near=950.0, dynamodb=400.0),
        "10000": _size(10_000, near=850.0, plain_near=300.0, dynamodb=190.0),
        "50000": _size(50_000, near=400.0, plain_near=100.0, dynamodb=50.0),
        "200000": _size(200_000, near=10.0, plain_near=5.0, dynamodb=2.0, hit="MISS"),
    }

    verdicts = {verdict["description"]: verdict["met"] for verdict in judge(sizes)}

    assert verdicts == {
        "gzip client: dynamodb-near req/s at 10k >= 0.8x at 3": True,
        "gzip client: dynamodb-near req/s at 50k >= 0.5x at 3": False,
        "plain client: dynamodb-near req/s at 10k >= 0.4x at 3": False,
        "gzip client at 10k: bytes on the wire per response <= 15% of the body "
        "(dynamodb-near)": True,
        "plain client: dynamodb (no near-cache) req/s at 10k >= 0.5x its own at 3": False,
        "gzip client: dynamodb (no near-cache) req/s at 10k >= 0.5x its own at 3": False,
        "200k categories on dynamodb (no near-cache): GETs after the run are HIT": False,
        "plain client, 3 categories: dynamodb-near req/s >= 0.9x simplecache": True,
    }


def test_targets_the_run_did_not_measure_are_left_out() -> None:
    assert judge({"3": _size(3, near=1.0, plain_near=1.0, dynamodb=1.0)}) == [
        {
            "description": "plain client, 3 categories: dynamodb-near req/s >= 0.9x simplecache",
            "measured": 1.0 / 1000.0,
            "shown": "0.00x",
            "limit": 0.9,
            "met": False,
        }
    ]


@pytest.fixture(scope="module")
def scale_output(dynamodb_local: DynamoDBLocal, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run shared by the tests below: the run is the slow part."""
    return run_benchmark_once(main, SMOKE_ARGS, dynamodb_local, tmp_path_factory, "bench-scale")


@pytest.mark.slow
def test_every_cell_is_measured_and_answered_as_its_client_asked(scale_output: Path) -> None:
    document = json.loads((scale_output / "bench-scale.json").read_text())

    assert list(document["contenders"]) == list(SMOKE_CONTENDERS)
    assert list(document["sizes"]) == [str(size) for size in SMOKE_SIZES]
    for size in document["sizes"].values():
        for name in SMOKE_CONTENDERS:
            for client in (PLAIN, GZIP):
                summary = size["summary"][name][client]
                assert summary["requests_per_second"] > 0, (size["categories"], name, client)
                assert summary["bytes_per_response"] > 0, (size["categories"], name, client)
        assert size["summary"]["dynamodb-near"][PLAIN]["cache_hit_share"] == 1.0
        assert size["summary"]["nginx-static"][PLAIN]["cache_hit_share"] is None
    tiny = document["sizes"][str(TINY_CATALOGUE)]
    assert tiny["gzip_bytes"] < tiny["identity_bytes"]
    for name in SMOKE_CONTENDERS:
        plain, gzipped = tiny["probes"][name][PLAIN], tiny["probes"][name][GZIP]
        assert (plain["content_encoding"], plain["body_bytes"]) == (
            "identity",
            tiny["identity_bytes"],
        )
        assert (gzipped["content_encoding"], gzipped["body_bytes"]) == ("gzip", tiny["gzip_bytes"])
    assert tiny["probes"]["dynamodb-near"][GZIP]["x_cache"] == "HIT"
    assert document["targets"] == []  # none of the issue's sizes and pairs was run
    assert document["tools"]["nginx"].startswith("nginx/")


@pytest.mark.slow
def test_markdown_has_the_issues_table_for_both_clients(scale_output: Path) -> None:
    page = (scale_output / "bench-scale.md").read_text()

    assert "## req/s, plain client" in page
    assert "## req/s, gzip-accepting client" in page
    assert "| categories | body | dynamodb-near | nginx-static |" in page
    assert f"| {TINY_CATALOGUE} | " in page
    assert "bench-scale.png" not in page  # --no-chart: no dangling image link
