"""One run of a benchmark's command line, as the benchmarks' smoke tests make it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from devtools.dynamodb_local import DynamoDBLocal


def run_benchmark_once(
    main: Callable[[Sequence[str]], int],
    arguments: Sequence[str],
    dynamodb_local: DynamoDBLocal,
    tmp_path_factory: pytest.TempPathFactory,
    output_name: str,
) -> Path:
    """``main(arguments)`` on the session's DynamoDB Local; the folder its reports went to.

    Every benchmark's smoke test runs its command line the same way: once per module
    (the run is the slow part), on the shared DynamoDB Local rather than a JVM of its
    own, into a fresh folder, without the chart (matplotlib is optional), and only a
    run that exits 0 has reports worth reading.
    """
    output_dir = tmp_path_factory.mktemp(output_name)
    exit_code = main(
        [
            *arguments,
            *("--endpoint-url", dynamodb_local.endpoint_url),
            *("--output-dir", str(output_dir)),
            "--no-chart",
        ]
    )
    assert exit_code == 0
    return output_dir
