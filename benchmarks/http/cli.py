"""``python -m benchmarks.http``: start the servers, load them in rounds and waves, report.

``--sustained SECONDS`` replaces both with minutes of waves on one server
(dynamodb-near unless ``--only`` names others) and writes its own report,
bench-http-sustained.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.http import report
from benchmarks.http.contenders import (
    CONTENDER_NAMES,
    CONTENDERS,
    DYNAMODB_NEAR,
    Contender,
    select_contenders,
)
from benchmarks.http.runner import (
    DEFAULT_CONNECTIONS,
    DEFAULT_DURATION_SECONDS,
    DEFAULT_ROUNDS,
    DEFAULT_WARMUP_SECONDS,
    DEFAULT_WORKERS,
    LoadSettings,
    run_rounds,
    sustained_document,
)
from benchmarks.http.servers import find_redis_server, redis_server, serving, warm_up
from benchmarks.http.waves import (
    DEFAULT_WAVES,
    SUSTAINED_MAX_WORKER_AGE_SECONDS,
    run_sustained,
)
from benchmarks.http.wrk import find_wrk
from benchmarks.options import add_report_arguments, positive_int, write_reports
from benchmarks.runner import print_progress
from devtools.credentials import use_local_aws_credentials
from devtools.dynamodb_local import dynamodb_endpoint
from devtools.environment import describe_run, finish_run, version_line
from devtools.processes import stopping_on_sigterm
from devtools.stampede import Stage
from ecommerce.config import DEFAULTS

#: The libraries on the request path of some contender.
SERVING_PACKAGES = (
    "Flask",
    "Flask-Caching",
    "gunicorn",
    "gevent",
    "redis",
    "botocore",
    "pynamodb",
    "prometheus-client",
)
#: The production log level, not the stage's quieter default: the access log line
#: each request writes is part of what the app costs per request.
PRODUCTION_LOGGING = {"LOG_LEVEL": DEFAULTS["LOG_LEVEL"]}
#: The exit status of a process stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED_EXIT_STATUS = 130
#: gunicorn.conf.py's age limit, set for the servers this run starts.
MAX_WORKER_AGE_VARIABLE = "GUNICORN_MAX_WORKER_AGE_SECONDS"


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


@contextmanager
def _environment_variable(name: str, value: str | None) -> Iterator[None]:
    """``name=value`` for the servers started meanwhile (they inherit this environment)."""
    if value is None:
        yield
        return
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def _contender_names(text: str) -> list[Contender]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"name at least one of {','.join(CONTENDER_NAMES)}")
    try:
        return select_contenders(names)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http",
        description="GET /categories under gunicorn with each cache backend, loaded by wrk "
        "in interleaved rounds.",
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=DEFAULT_ROUNDS, help="measured rounds (%(default)s)"
    )
    parser.add_argument(
        "--duration",
        type=positive_int,
        default=DEFAULT_DURATION_SECONDS,
        help="seconds of load per contender per round (%(default)s)",
    )
    parser.add_argument(
        "--waves",
        type=_non_negative_int,
        default=DEFAULT_WAVES,
        help="after the rounds, back-to-back wrk runs of --duration on each contender, "
        "with worker boots, metrics files and /metrics time after each (%(default)s; 0: none)",
    )
    parser.add_argument(
        "--sustained",
        type=positive_int,
        metavar="SECONDS",
        help="instead of rounds and waves: this many seconds of back-to-back waves on "
        f"{DYNAMODB_NEAR} (or --only), workers recycled by age; writes "
        "bench-http-sustained.{json,md}",
    )
    parser.add_argument(
        "--max-worker-age",
        type=_non_negative_int,
        metavar="SECONDS",
        help=f"{MAX_WORKER_AGE_VARIABLE} for the servers (default: as deployed, off; "
        f"{SUSTAINED_MAX_WORKER_AGE_SECONDS} under --sustained)",
    )
    parser.add_argument(
        "--warmup",
        type=positive_int,
        default=DEFAULT_WARMUP_SECONDS,
        help="unmeasured seconds of load per contender before the rounds (%(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=positive_int,
        default=DEFAULT_CONNECTIONS,
        help="concurrent keep-alive connections (%(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        help="gunicorn workers, the same for every contender (%(default)s)",
    )
    parser.add_argument(
        "--only",
        type=_contender_names,
        metavar="NAME,NAME",
        help=f"contenders to run (all: {','.join(CONTENDER_NAMES)}; "
        f"{DYNAMODB_NEAR} under --sustained)",
    )
    parser.add_argument(
        "--endpoint-url",
        help="use this DynamoDB (Local) instead of starting one; the run's fresh tables "
        "(one per DynamoDB contender) are left there",
    )
    add_report_arguments(parser, "bench-http.{json,md,png}")
    args = parser.parse_args(argv)
    if args.only is None:
        args.only = select_contenders([DYNAMODB_NEAR]) if args.sustained else list(CONTENDERS)
    if args.max_worker_age is None and args.sustained:
        args.max_worker_age = SUSTAINED_MAX_WORKER_AGE_SECONDS
    args.wrk = find_wrk()
    if args.wrk is None:
        parser.error("wrk is not installed: `make system-deps` installs the Debian package")
    args.redis_server = find_redis_server()
    if args.redis_server is None and any(contender.uses_redis for contender in args.only):
        parser.error(
            "redis-server is not installed: `make system-deps` installs the Debian package "
            "(or leave redis out with --only)"
        )
    return args


def tool_versions(wrk: str, redis_binary: str | None, runs_redis: bool) -> dict[str, Any]:
    """The releases of wrk and redis-server that a run used, for its JSON document."""
    wrk_line = version_line([wrk, "--version"]) or "wrk"
    redis_line = version_line([redis_binary, "--version"]) if runs_redis else None
    return {
        "wrk": wrk_line.partition(" Copyright")[0],
        # "Redis server v=7.0.15 sha=... malloc=...": the release is the third word.
        "redis_server": " ".join(redis_line.split()[:3]) if redis_line else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    contenders: list[Contender] = args.only
    settings = LoadSettings(
        rounds=args.rounds,
        duration_seconds=args.duration,
        warmup_seconds=args.warmup,
        connections=args.connections,
        workers=args.workers,
        waves=args.waves,
        max_worker_age_seconds=args.max_worker_age,
    )
    runs_redis = any(contender.uses_redis for contender in contenders)
    started = time.perf_counter()
    use_local_aws_credentials()
    command = ["python", "-m", "benchmarks.http", *(sys.argv[1:] if argv is None else argv)]
    max_worker_age = None if args.max_worker_age is None else str(args.max_worker_age)
    try:
        with (
            stopping_on_sigterm(),
            _environment_variable(MAX_WORKER_AGE_VARIABLE, max_worker_age),
            ExitStack() as stack,
        ):
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-http-")))
            endpoint_url, jar = stack.enter_context(dynamodb_endpoint(args.endpoint_url))
            redis_url = (
                stack.enter_context(redis_server(args.redis_server, workdir))
                if runs_redis
                else None
            )
            stage = Stage(endpoint_url, workdir, common_settings=PRODUCTION_LOGGING)
            document: dict[str, Any] = describe_run(command, jar, SERVING_PACKAGES)
            document["tools"] = tool_versions(args.wrk, args.redis_server, runs_redis)
            print_progress(f"starting {len(contenders)} servers, {args.workers} workers each")
            served = stack.enter_context(serving(stage, contenders, args.workers, redis_url))
            if args.sustained:
                warm_up(served, args.wrk, settings.warmup_seconds, settings.connections)
                print_progress(f"sustained: {args.sustained}s of waves per contender")
                slices = run_sustained(
                    served, args.wrk, args.sustained, args.connections, print_progress
                )
                document |= sustained_document(contenders, settings, args.sustained, slices)
            else:
                document |= run_rounds(served, args.wrk, settings, print_progress)
    except KeyboardInterrupt:
        print("interrupted; every server was stopped", file=sys.stderr)
        return INTERRUPTED_EXIT_STATUS
    finish_run(document, started)
    if args.sustained:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        print(report.sustained_text_report(document))
        written = [
            report.write_document_json(document, args.output_dir, report.SUSTAINED_JSON_NAME),
            report.write_sustained_markdown(document, args.output_dir),
        ]
        print("wrote " + ", ".join(str(path) for path in written))
        return 0

    print(report.text_report(document))
    write_reports(
        document,
        args.output_dir,
        not args.no_chart,
        report.write_document_json,
        report.write_chart,
        report.write_markdown,
    )
    return 0
