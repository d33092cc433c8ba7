"""``python -m benchmarks``: start DynamoDB Local, run, print, write docs/benchmarks.*."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import report
from benchmarks.options import add_report_arguments, positive_int, write_reports
from benchmarks.runner import DEFAULT_ITERATIONS, DEFAULT_ROUNDS, BenchmarkSettings, run_benchmark
from devtools.credentials import use_local_aws_credentials
from devtools.dynamodb_local import dynamodb_endpoint
from devtools.environment import describe_run, finish_run


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
    add_report_arguments(parser, "benchmarks.{json,md,png}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    use_local_aws_credentials()
    settings = BenchmarkSettings(rounds=args.rounds, iterations=args.iterations)
    command = ["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]
    with dynamodb_endpoint(args.endpoint_url) as (endpoint_url, jar):
        document: dict[str, Any] = describe_run(command, jar)
        document.update(
            run_benchmark(endpoint_url, settings, drop_tables=args.endpoint_url is not None)
        )
    finish_run(document, started)

    print(report.text_report(document))
    write_reports(
        document,
        args.output_dir,
        not args.no_chart,
        report.write_json,
        report.write_chart,
        report.write_markdown,
    )
    return 0
