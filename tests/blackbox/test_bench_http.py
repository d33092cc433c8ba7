"""``python -m benchmarks.http``: wrk's report is read right; a tiny run writes what docs expect.

The run uses the session's DynamoDB Local and one-second loads; its numbers are
never judged (a test that asserted speed would fail on any busy machine), only
that every contender answered and was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.http.cli import main
from benchmarks.http.contenders import CONTENDER_NAMES
from benchmarks.http.wrk import WrkError, parse_wrk_output
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.benchmark_runs import run_benchmark_once

#: What ``wrk --latency`` printed against the app (wrk 4.1.0), trimmed to the parsed lines.
WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:50179/categories
  2 threads and 16 connections
  Latency Distribution
     50%  613.00us
     75%  136.24ms
     90%  365.17ms
     99%    1.04s
  12172 requests in 3.00s, 4.64MB read
Requests/sec:   4054.47
Transfer/sec:      1.55MB
"""
SOCKET_ERRORS_LINE = "  Socket errors: connect 0, read 3, write 0, timeout 2\n"
NON_2XX_LINE = "  Non-2xx or 3xx responses: 12\n"

#: One short round and two waves: enough to start, warm, check and measure every contender.
SMOKE_WAVES = 2
SMOKE_ARGS = [
    *("--rounds", "1"),
    *("--waves", str(SMOKE_WAVES)),
    *("--duration", "1"),
    *("--warmup", "1"),
    *("--connections", "4"),
    *("--workers", "1"),
]


def test_wrk_report_is_read_in_milliseconds() -> None:
    result = parse_wrk_output(WRK_OUTPUT)

    assert result.requests_per_second == 4054.47
    assert result.requests == 12172
    assert result.p50_ms == pytest.approx(0.613)
    assert result.p99_ms == pytest.approx(1040.0)
    assert result.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def test_wrk_socket_errors_are_kept_by_kind() -> None:
    result = parse_wrk_output(WRK_OUTPUT.replace(" read\n", " read\n" + SOCKET_ERRORS_LINE))

    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}


def test_error_answers_stop_the_benchmark() -> None:
    with pytest.raises(WrkError, match="12 answers were not 2xx or 3xx"):
        parse_wrk_output(WRK_OUTPUT.replace(" read\n", " read\n" + NON_2XX_LINE))


@pytest.fixture(scope="module")
def benchmark_output(
    dynamodb_local: DynamoDBLocal, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One run shared by the tests below: the run is the slow part."""
    return run_benchmark_once(main, SMOKE_ARGS, dynamodb_local, tmp_path_factory, "bench-http")


@pytest.mark.slow
def test_json_measures_every_contender(benchmark_output: Path) -> None:
    document = json.loads((benchmark_output / "bench-http.json").read_text())

    assert list(document["contenders"]) == list(CONTENDER_NAMES)
    assert len(document["rounds"]) == 1
    results = document["rounds"][0]["results"]
    assert set(results) == set(CONTENDER_NAMES)
    for name, result in results.items():
        assert result["requests_per_second"] > 0, name
        assert 0 < result["p50_ms"] <= result["p99_ms"], name
        # The app counts its cache reads; the bare app has no cache to count.
        assert ("cache_results" in result) == (name != "bare-flask"), name
    summary = document["summary"]
    assert set(summary) == set(CONTENDER_NAMES)
    assert all(summary[name]["requests_per_second"] > 0 for name in CONTENDER_NAMES)
    assert set(summary["dynamodb-near"]["requests_per_second_ratios"]) == {
        "simplecache",
        "redis",
        "bare-flask",
    }
    assert [target["description"] for target in document["targets"]] == [
        "dynamodb-near req/s >= 0.9x simplecache",
        "dynamodb-near req/s >= 1.0x redis",
        "dynamodb-near p99 <= redis p99",
        "dynamodb-near req/s >= 0.8x bare-flask (the hit at the floor's cost)",
        "simplecache req/s >= 0.8x bare-flask (the hit at the floor's cost)",
    ]
    assert document["parameters"]["workers"] == 1
    assert document["server"]["started_by_benchmark"] is False
    assert document["tools"]["wrk"].startswith("wrk")


@pytest.mark.slow
def test_json_has_the_waves_of_every_contender(benchmark_output: Path) -> None:
    waves = json.loads((benchmark_output / "bench-http.json").read_text())["waves"]

    assert list(waves) == list(CONTENDER_NAMES)
    for name, contender_waves in waves.items():
        assert len(contender_waves) == SMOKE_WAVES, name
        for wave in contender_waves:
            assert wave["requests_per_second"] > 0 and wave["p99_ms"] > 0, name
            assert wave["worker_boots"] == 0, "as deployed, no worker recycles in seconds"
            if name == "bare-flask":  # no /metrics, no multiprocess files of its own
                assert wave["metrics_files"] is None and wave["metrics_ms"] is None
            else:
                assert wave["metrics_files"] > 0 and wave["metrics_ms"] > 0, name
                assert wave["metrics_processes"] == 1, "one worker, nothing archived yet"


@pytest.mark.slow
def test_markdown_has_a_row_per_contender(benchmark_output: Path) -> None:
    page = (benchmark_output / "bench-http.md").read_text()

    for name in CONTENDER_NAMES:
        assert f"| {name} |" in page
    assert "| dynamodb-near req/s >= 0.9x simplecache |" in page
    assert "bench-http.png" not in page  # --no-chart: no dangling image link
    assert "## Waves: one server, back to back" in page
    assert "| simplecache | 2 |" in page


@pytest.mark.slow
def test_a_sustained_run_reports_recycled_workers_per_wave(
    dynamodb_local: DynamoDBLocal, tmp_path: Path
) -> None:
    """Workers recycled after a second: the wave sees boots, the directory stays small.

    Six seconds: on a saturated machine a recycled worker's successor can take seconds to
    boot, and the wave counts only the boots it saw."""
    exit_code = main(
        [
            *("--sustained", "6"),
            *("--max-worker-age", "1"),
            *("--only", "simplecache"),
            *("--warmup", "1"),
            *("--connections", "4"),
            *("--workers", "1"),
            *("--endpoint-url", dynamodb_local.endpoint_url),
            *("--output-dir", str(tmp_path)),
        ]
    )

    assert exit_code == 0
    document = json.loads((tmp_path / "bench-http-sustained.json").read_text())
    assert document["parameters"]["sustained_seconds"] == 6
    assert document["parameters"]["max_worker_age_seconds"] == 1
    (wave,) = document["sustained"]["simplecache"]
    assert wave["worker_boots"] >= 1
    # One live worker and the archive, however many workers came and went.
    assert wave["metrics_processes"] <= 2
    assert "| simplecache | 1 |" in (tmp_path / "bench-http-sustained.md").read_text()
    assert not (tmp_path / "bench-http.json").exists()
