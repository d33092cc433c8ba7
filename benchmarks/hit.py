"""``make bench-hit`` (``python -m benchmarks.hit``): what the app's own work costs per hit.

The app as ``create_app`` builds it (SimpleCache, warm, the JSON access log written to
a file as gunicorn's stdout would be, Prometheus in multiprocess mode as deployed) is
called through WSGI with one prebuilt environ, beside a bare Flask view that returns
the same bytes: the floor. Interleaved rounds, medians of the per-call CPU times; the
difference is the app's own work per hit (its log line, metrics, headers, negotiation,
request id), the number a change to the hit path should not raise.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication

#: Calls per contender per round, and rounds (the first ones warm up and are dropped).
DEFAULT_CALLS = 2000
DEFAULT_ROUNDS = 7
WARM_UP_ROUNDS = 2


def environ_for(path: str) -> dict[str, Any]:
    """One GET of ``path`` as a WSGI server hands it over (reused: a copy per call)."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_ACCEPT": "application/json",
        "HTTP_ACCEPT_ENCODING": "gzip",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def call(app: WSGIApplication, environ: dict[str, Any]) -> bytes:
    """One request through ``app``; its body (read, as a server would)."""
    status: list[str] = []

    def start_response(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(code)

    body = b"".join(app(dict(environ), start_response))
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"GET answered {status}")
    return body


def per_call_microseconds(app: WSGIApplication, environ: dict[str, Any], calls: int) -> float:
    """CPU time per call: this process's, not the wall clock's. The machine may be
    shared (CI, other jobs): time spent descheduled is not the app's work, and would
    otherwise land on whichever contender was running when another process woke."""
    started = time.process_time()
    for _ in range(calls):
        call(app, environ)
    return (time.process_time() - started) / calls * 1e6


def the_app() -> WSGIApplication:
    """The landed app on SimpleCache and a freshly seeded SQLite catalogue."""
    from devtools.fleet import prepare
    from ecommerce import create_app

    folder = Path(tempfile.mkdtemp(prefix="bench-hit-"))
    settings = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'catalogue.sqlite'}",
        "CATALOGUE_EVENTS_DIR": str(folder / "instance"),
    }
    prepare({**settings, "LOG_LEVEL": "WARNING"}, quiet=True)  # schema and seeds
    return create_app(settings)


def the_floor(body: bytes) -> WSGIApplication:
    """A bare Flask view answering ``body`` as prebuilt bytes."""
    from flask import Flask, Response

    floor = Flask("floor")

    @floor.get("/categories")
    def list_categories() -> Response:
        return Response(body, mimetype="application/json")

    return floor


def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds of the app and the floor: per-call microseconds, warm-ups dropped."""
    app = the_app()
    environ = environ_for("/categories")
    identity = dict(environ, HTTP_ACCEPT_ENCODING="identity")
    floor = the_floor(call(app, identity))
    times: dict[str, list[float]] = {"app": [], "bare Flask": []}
    for number in range(rounds + WARM_UP_ROUNDS):
        app_time = per_call_microseconds(app, environ, calls)
        floor_time = per_call_microseconds(floor, environ, calls)
        if number >= WARM_UP_ROUNDS:
            times["app"].append(app_time)
            times["bare Flask"].append(floor_time)
    return times


def report(times: dict[str, list[float]]) -> str:
    app, floor = statistics.median(times["app"]), statistics.median(times["bare Flask"])
    overheads = [a - f for a, f in zip(times["app"], times["bare Flask"], strict=True)]
    return "\n".join(
        [
            "| contender | µs per hit, median | per-round range |",
            "| --- | ---: | ---: |",
            f"| app (SimpleCache, logging, metrics) | {app:.1f} "
            f"| {min(times['app']):.1f} - {max(times['app']):.1f} |",
            f"| bare Flask, same bytes | {floor:.1f} "
            f"| {min(times['bare Flask']):.1f} - {max(times['bare Flask']):.1f} |",
            f"| the app's own work | {app - floor:.1f} "
            f"| {min(overheads):.1f} - {max(overheads):.1f} |",
        ]
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hit", description=__doc__)
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="%(default)s")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="%(default)s")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse(argv)
    # As deployed: metrics in multiprocess mode (set before prometheus_client is imported),
    # the access log written out as gunicorn's stdout would be (here to a scratch file).
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-hit-prom-"))
    log = Path(tempfile.mkdtemp(prefix="bench-hit-log-")) / "access.log"
    with log.open("w") as stream, redirect_stdout(stream):
        times = measure(arguments.calls, arguments.rounds)
    print(report(times))
    print(f"\n{arguments.rounds} rounds of {arguments.calls} calls each; log lines in {log}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
