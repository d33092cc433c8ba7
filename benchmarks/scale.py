"""``python -m benchmarks.scale`` (``make bench-scale``): GET /categories, 3 to 200,000 categories.

The command line of ``benchmarks.http.scale``: it starts DynamoDB Local (or uses
``--endpoint-url``), runs every size, and writes ``docs/bench-scale.{json,md,png}``.
A smoke run: ``python -m benchmarks.scale --categories 3,1000 --duration 1 --warmup 1``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.http import scale_report
from benchmarks.http.cli import (
    INTERRUPTED_EXIT_STATUS,
    PRODUCTION_LOGGING,
    SERVING_PACKAGES,
    tool_versions,
)
from benchmarks.http.contenders import REDIS, Contender
from benchmarks.http.scale import (
    NGINX_STATIC,
    SCALE_CONTENDER_NAMES,
    SCALE_CONTENDERS,
    Programs,
    ScaleSettings,
    run_scale,
)
from benchmarks.http.servers import find_redis_server
from benchmarks.http.static_nginx import nginx_version
from benchmarks.http.wrk import find_wrk
from benchmarks.options import add_report_arguments, positive_int, write_reports
from benchmarks.runner import print_progress
from devtools.credentials import use_local_aws_credentials
from devtools.dynamodb_local import dynamodb_endpoint
from devtools.environment import describe_run, finish_run
from devtools.fleet import find_nginx
from devtools.processes import stopping_on_sigterm
from devtools.stampede import Stage
from ecommerce.database import SEED_CATEGORY_NAMES


def _sizes(text: str) -> tuple[int, ...]:
    """``3,1000,10_000``: sizes, smallest first; each holds the seed categories at least."""
    try:
        sizes = {int(part.replace("_", "")) for part in text.split(",") if part.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    smallest = len(SEED_CATEGORY_NAMES)
    if not sizes or min(sizes) < smallest:
        raise argparse.ArgumentTypeError(f"each size must be at least {smallest} (the seeds)")
    return tuple(sorted(sizes))


def _contenders(text: str) -> list[Contender]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(SCALE_CONTENDER_NAMES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown contenders {unknown}; choose from {','.join(SCALE_CONTENDER_NAMES)}"
        )
    return [contender for contender in SCALE_CONTENDERS if contender.name in names]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = ScaleSettings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description="GET /categories at several catalogue sizes, plain and gzip clients, on "
        "each cache backend, Flask-Caching's @cache.cached and nginx serving a file.",
    )
    parser.add_argument(
        "--categories",
        type=_sizes,
        default=defaults.sizes,
        metavar="N,N",
        help=f"catalogue sizes ({','.join(map(str, defaults.sizes))})",
    )
    parser.add_argument(
        "--duration",
        type=positive_int,
        default=defaults.duration_seconds,
        help="seconds of load per contender, client and round (%(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=positive_int,
        default=defaults.warmup_seconds,
        help="unmeasured seconds of load per contender and size (%(default)s)",
    )
    parser.add_argument(
        "--dynamodb-warmup",
        type=positive_int,
        default=defaults.dynamodb_warmup_seconds,
        help="more unmeasured seconds for the DynamoDB contenders before the first size, "
        "for DynamoDB Local's JVM (%(default)s)",
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=defaults.rounds, help="rounds per size (%(default)s)"
    )
    parser.add_argument(
        "--connections",
        type=positive_int,
        default=defaults.connections,
        help="concurrent keep-alive connections (%(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=defaults.workers,
        help="gunicorn workers per contender, and nginx's (%(default)s)",
    )
    parser.add_argument(
        "--only",
        type=_contenders,
        default=list(SCALE_CONTENDERS),
        metavar="NAME,NAME",
        help=f"contenders to run (all: {','.join(SCALE_CONTENDER_NAMES)})",
    )
    parser.add_argument("--endpoint-url", help="use this DynamoDB (Local) instead of starting one")
    add_report_arguments(parser, "bench-scale.{json,md,png}")
    args = parser.parse_args(argv)
    args.wrk = find_wrk()
    if args.wrk is None:
        parser.error("wrk is not installed: `make system-deps` installs the Debian package")
    names = {contender.name for contender in args.only}
    args.programs = Programs(redis_server=find_redis_server(), nginx=find_nginx())
    if args.programs.redis_server is None and REDIS in names:
        parser.error("redis-server is not installed: `make system-deps` (or leave out redis)")
    if args.programs.nginx is None and NGINX_STATIC in names:
        parser.error(f"nginx is not installed: `make system-deps` (or leave out {NGINX_STATIC})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    contenders: list[Contender] = args.only
    programs: Programs = args.programs
    settings = ScaleSettings(
        sizes=args.categories,
        duration_seconds=args.duration,
        warmup_seconds=args.warmup,
        dynamodb_warmup_seconds=args.dynamodb_warmup,
        rounds=args.rounds,
        connections=args.connections,
        workers=args.workers,
    )
    runs_redis = any(contender.uses_redis for contender in contenders)
    started = time.perf_counter()
    use_local_aws_credentials()
    command = ["python", "-m", "benchmarks.scale", *(sys.argv[1:] if argv is None else argv)]
    try:
        with stopping_on_sigterm(), ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
            endpoint_url, jar = stack.enter_context(dynamodb_endpoint(args.endpoint_url))
            stage = Stage(endpoint_url, workdir, common_settings=PRODUCTION_LOGGING)
            document: dict[str, Any] = describe_run(command, jar, SERVING_PACKAGES)
            document["tools"] = tool_versions(args.wrk, programs.redis_server, runs_redis)
            document["tools"]["nginx"] = nginx_version(programs.nginx) if programs.nginx else None
            document |= run_scale(stage, contenders, args.wrk, settings, programs, print_progress)
    except KeyboardInterrupt:
        print("interrupted; every server was stopped", file=sys.stderr)
        return INTERRUPTED_EXIT_STATUS
    finish_run(document, started)
    print(scale_report.text_report(document))
    write_reports(
        document,
        args.output_dir,
        not args.no_chart,
        scale_report.write_document_json,
        scale_report.write_chart,
        scale_report.write_markdown,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
