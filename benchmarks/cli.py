"""``python -m benchmarks``: start DynamoDB Local, run, print, write docs/benchmarks.*."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks import environment, report
from benchmarks.runner import DEFAULT_ITERATIONS, DEFAULT_ROUNDS, BenchmarkSettings, run_benchmark
from cache_backends.local import DynamoDBLocal

DEFAULT_OUTPUT_DIR = Path("docs")
#: Dummies so botocore signs requests without looking for (and never finding) a real
#: account; DynamoDB Local accepts any credentials.
DUMMY_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Our DynamoDBCache vs cachelib's DynamoDbCache vs a bare GetItem, "
        "on one DynamoDB Local, in interleaved rounds.",
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=DEFAULT_ROUNDS, help="measured rounds (%(default)s)"
    )
    parser.add_argument(
        "--iterations",
        type=positive_int,
        default=DEFAULT_ITERATIONS,
        help="calls per contender per round for single-key operations (%(default)s); "
        "100-key operations run a tenth as many",
    )
    parser.add_argument(
        "--endpoint-url",
        help="use this DynamoDB (Local) instead of starting one; the tables this run "
        "creates there (one per contender) are dropped at the end, no others",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help="where benchmarks.{json,md,png} are written (%(default)s)",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib)")
    return parser.parse_args(argv)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def use_dummy_aws_credentials() -> None:
    """Give botocore dummy credentials unless the caller already chose some."""
    if "AWS_ACCESS_KEY_ID" not in os.environ:
        os.environ.update(DUMMY_AWS_ENVIRONMENT)
    os.environ.setdefault("AWS_DEFAULT_REGION", DUMMY_AWS_ENVIRONMENT["AWS_DEFAULT_REGION"])


@contextlib.contextmanager
def dynamodb_endpoint(endpoint_url: str | None) -> Iterator[tuple[str, Path | None]]:
    """The given endpoint, or a private DynamoDB Local for the run (and its jar)."""
    if endpoint_url:
        yield endpoint_url, None
        return
    with DynamoDBLocal() as server:
        yield server.endpoint_url, server.jar


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    use_dummy_aws_credentials()
    settings = BenchmarkSettings(rounds=args.rounds, iterations=args.iterations)
    with dynamodb_endpoint(args.endpoint_url) as (endpoint_url, jar):
        document: dict[str, Any] = {
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": shlex.join(
                ["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]
            ),
            "machine": environment.describe_machine(),
            "server": environment.describe_server(jar),
            "versions": environment.package_versions(),
        }
        document.update(
            run_benchmark(endpoint_url, settings, drop_tables=args.endpoint_url is not None)
        )
    document["machine"]["load_average_at_end"] = environment.load_average()
    document["runtime_seconds"] = round(time.perf_counter() - started, 1)

    print(report.text_report(document))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    written = [report.write_json(document, args.output_dir)]
    if not args.no_chart:
        written.append(report.write_chart(document, args.output_dir))
    written.append(report.write_markdown(document, args.output_dir, not args.no_chart))
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
