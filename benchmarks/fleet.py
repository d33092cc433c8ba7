"""``make bench-fleet`` (``python -m benchmarks.fleet``): what a fleet costs DynamoDB.

The service's shape is many gunicorn processes on many instances sharing one table, so
what matters is how DynamoDB's traffic grows: with processes, instances, the
catalogue's size, changes. Each *shape* (instances x workers) of the app runs on one
catalogue of natural names (``benchmarks.http.catalogue``), in PostgreSQL as deployed
(its change listener drives the instances) or SQLite (``--database``), and one
DynamoDB Local table behind ``devtools/dynamodb_proxy.py``, which records every call's
operation, key and consumed capacity. Windows, in order, against the same fleet (a
server lives for days: it is not restarted between them):

- ``warm-up``: from a cold cache, a few GETs per worker (each reads the list once);
- ``idle``: no request;
- ``traffic``: a steady request rate over the instances, round robin;
- ``change``: the same traffic, and one category added through the first instance's
  API at its start: what a change costs (the reads of the new body, the loads);
- ``changes``: the same traffic, and a category added every second, in turn through
  the API and with plain SQL (a back-office tool): whether a read ever waits on a
  change's repair (the slowest ``MISS``);
- ``throttled``: the same traffic, with a share of the list's reads refused for
  capacity by the proxy, as DynamoDB does for a hot key;
- ``hung``: the same traffic, DynamoDB Local stopped (SIGSTOP).

Per window: calls, read and write units per second (per process and per instance),
the hottest item's read units per second, database loads (the app's own
``ecommerce_db_loads_total``), latency (p50, p99, the slowest ``MISS``) and X-Cache.
Traffic is paced (``--rate``), or ``--looping-readers`` each send their next GET as
soon as the last one answered (a hung DynamoDB then shows what a reader waits). Then a model of the
``traffic`` and ``change`` windows at 10, 100 and 1,000 instances x 8 workers with the
monthly on-demand cost; its assumptions are printed with it.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from benchmarks.http.catalogue import (
    build_catalogue,
    copy_catalogue_to_postgresql,
    copying_catalogue,
    insert_category,
)
from cache_backends.dynamodb.settings import DEFAULT_BODY_COPIES
from devtools import REPOSITORY_ROOT
from devtools.credentials import DEV_ADMIN_AUTHORIZATION, use_local_aws_credentials
from devtools.dynamodb_local import DynamoDBLocal
from devtools.dynamodb_proxy import Call, DynamoDBProxy
from devtools.fleet import dynamodb_settings, gunicorn_instance, prepare, wait_until_healthy
from devtools.postgresql import LocalPostgreSQL
from devtools.stampede import db_loads
from ecommerce.config import CacheStrategy

#: One partition serves about this many read units a second (DynamoDB's documented limit).
PARTITION_READ_UNITS = 3000.0
PARTITION_WRITE_UNITS = 1000.0
#: On-demand, us-east-1, after the November 2024 price cut: dollars per million units.
READ_UNIT_DOLLARS = 0.125 / 1e6
WRITE_UNIT_DOLLARS = 0.625 / 1e6
SECONDS_A_MONTH = 30 * 24 * 3600
MODEL_INSTANCES = (10, 100, 1000)
MODEL_WORKERS = 8
HTTP_TIMEOUT_SECONDS = 10.0
LIST_KEY = "ecommerce:categories:all"
BENCH_FLEET_PAGE = REPOSITORY_ROOT / "docs" / "bench-fleet.md"
DEPLOY_GUIDE = REPOSITORY_ROOT / "docs" / "deploy.md"
#: In the key of each of the list's bodies (``cache_backends.body_store.BODY_SUFFIX``).
BODY_MARK = ":body:"
#: Seconds after the ``changes`` window, unmeasured: a load of its last change (a second
#: before its end) may take longer than that second on a slow database.
SETTLE_SECONDS = 3.0
#: GETs per worker before the windows: enough for gunicorn to hand every worker some.
WARM_UP_GETS_PER_WORKER = 8


@dataclass(frozen=True)
class Shape:
    instances: int
    workers: int

    @property
    def processes(self) -> int:
        return self.instances * self.workers

    def __str__(self) -> str:
        return f"{self.instances}x{self.workers}"


@dataclass
class Window:
    """What one window of one shape saw."""

    name: str
    seconds: float
    calls: list[Call]
    db_loads: float
    #: Each GET's seconds and X-Cache (or what failed), in the order they answered.
    answers: list[Answer] = field(default_factory=list)

    def units(self, *, reads: bool) -> float:
        writes = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
        return sum(
            call.capacity_units for call in self.calls if (call.operation in writes) != reads
        )

    def body_read_units(self) -> float:
        """Read units of the list's bodies (each version's own key) in this window."""
        return sum(
            call.capacity_units
            for call in self.calls
            if call.operation == "GetItem" and call.key is not None and BODY_MARK in call.key
        )

    def hottest_read_units(self) -> tuple[str, float]:
        per_key: Counter[str] = Counter()
        for call in self.calls:
            if call.key is not None and call.operation == "GetItem":
                per_key[call.key] += call.capacity_units
        if not per_key:
            return "-", 0.0
        key, units = per_key.most_common(1)[0]
        return key, units / self.seconds

    def row(self, shape: Shape) -> str:
        read_units = self.units(reads=True) / self.seconds
        write_units = self.units(reads=False) / self.seconds
        hot_key, hot_units = self.hottest_read_units()
        p50, p99, slowest_miss = self.latency_ms()
        x_cache = self.x_cache
        cache = ", ".join(f"{status} {count}" for status, count in sorted(x_cache.items()))
        return (
            f"| {shape} | {self.name} | {len(self.calls) / self.seconds:.2f} "
            f"| {read_units:.2f} | {read_units / shape.instances:.2f} "
            f"| {read_units / shape.processes:.2f} | {write_units:.2f} "
            f"| {write_units / shape.instances:.2f} | {hot_units:.2f} ({_short(hot_key)}) "
            f"| {self.db_loads:.0f} | {p50:.1f} | {p99:.1f} | {slowest_miss:.1f} "
            f"| {cache or '-'} |"
        )

    @property
    def x_cache(self) -> Counter[str]:
        """Answers by X-Cache (or what failed)."""
        return Counter(status for _, status in self.answers)

    def latency_ms(self) -> tuple[float, float, float]:
        """p50 and p99 of every answer, and the slowest ``MISS`` (nan where none)."""
        seconds = sorted(latency for latency, _ in self.answers)
        misses = [latency for latency, status in self.answers if status == "MISS"]
        if not seconds:
            return math.nan, math.nan, math.nan
        p99 = seconds[min(len(seconds) - 1, math.ceil(0.99 * len(seconds)) - 1)]
        slowest_miss = max(misses) if misses else math.nan
        return statistics.median(seconds) * 1000, p99 * 1000, slowest_miss * 1000


HEADER = (
    "| shape | window | calls/s | read units/s | per instance | per process | write units/s "
    "| per instance | hottest item read units/s | database loads | p50 ms | p99 ms "
    "| slowest MISS ms | X-Cache |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
    "| ---: | --- |"
)


#: One GET's seconds, and its X-Cache (or its status, or ``error``).
Answer = tuple[float, str]


def _short(key: str) -> str:
    return key.removeprefix("ecommerce:")[:32]


class Traffic:
    """``rate`` GETs a second over ``urls``, round robin, from a few pacing threads; or,
    with ``rate`` 0, ``threads`` readers each sending a GET as soon as its last answered."""

    def __init__(self, urls: Sequence[str], rate: float, threads: int = 4) -> None:
        self.urls, self.rate, self.threads = list(urls), rate, threads
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @contextmanager
    def running(self) -> Iterator[Traffic]:
        workers = [
            threading.Thread(target=self._pace, args=(index,), daemon=True)
            for index in range(self.threads)
        ]
        for worker in workers:
            worker.start()
        try:
            yield self
        finally:
            self._stop.set()
            for worker in workers:
                worker.join(HTTP_TIMEOUT_SECONDS)

    def take(self) -> list[Answer]:
        """What was answered since the last take."""
        with self._lock:
            taken, self.answers = self.answers, []
        return taken

    def _pace(self, index: int) -> None:
        session = requests.Session()
        period = self.threads / self.rate if self.rate > 0 else 0.0
        sent = 0
        next_at = time.monotonic() + index * period / self.threads
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            url = self.urls[(index + sent * self.threads) % len(self.urls)]
            started = time.perf_counter()
            try:
                response = session.get(f"{url}/categories", timeout=HTTP_TIMEOUT_SECONDS)
                status = response.headers.get("X-Cache", str(response.status_code))
            except requests.RequestException:
                status = "error"
            with self._lock:
                self.answers.append((time.perf_counter() - started, status))
            sent += 1
            next_at += period


def fleet_db_loads(urls: Sequence[str]) -> float:
    return sum(db_loads(url) for url in urls)


@contextmanager
def fleet(
    shape: Shape, settings: dict[str, object], workdir: Path, app_root: Path
) -> Iterator[list[str]]:
    """``shape.instances`` gunicorn instances, each with its own instance folder (as
    devtools.fleet.gunicorn_instance gives every instance)."""
    with ExitStack() as stack:
        urls = []
        for number in range(shape.instances):
            instance = stack.enter_context(
                gunicorn_instance(f"i{number}", settings, workdir, shape.workers, app_root=app_root)
            )
            wait_until_healthy(instance.url, instance.process, instance.log_path)
            urls.append(instance.url)
        yield urls


def measure(
    shape: Shape,
    catalogue: Path,
    ddb: DynamoDBLocal,
    proxy: DynamoDBProxy,
    arguments: argparse.Namespace,
    database_url: str | None = None,
) -> list[Window]:
    """The windows of one fleet of ``shape``: on an empty PostgreSQL database at
    ``database_url`` (filled with the catalogue), or on a copy of the SQLite catalogue."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-fleet-{shape}-"))
    settings: dict[str, object] = {
        **dynamodb_settings(proxy.endpoint_url, f"bench-fleet-{shape}-{os.getpid()}"),
        "SQLALCHEMY_DATABASE_URI": database_url or f"sqlite:///{workdir / 'catalogue.sqlite'}",
        "CACHE_NEAR_TTL": arguments.near_ttl,
        "CACHE_NEAR_TTL_WHILE_LISTENING": arguments.near_ttl_while_listening,
        "DB_LATENCY_MS": arguments.db_latency_ms,
        "CATEGORIES_CACHE_STRATEGY": arguments.strategy,
        "CACHE_DYNAMODB_BODY_COPIES": arguments.body_copies,
        "LOG_LEVEL": "WARNING",
    }
    prepare(settings, arguments.app_root, quiet=True)  # the table, the schema and the seeds
    if database_url is None:
        copying_catalogue(catalogue)(settings)
    else:
        copy_catalogue_to_postgresql(catalogue, database_url)
    windows: list[Window] = []
    with fleet(shape, settings, workdir, arguments.app_root) as urls:
        # From cold until (most likely) every worker has read the list: its body's reads.
        proxy.clear()
        started, loads = time.monotonic(), fleet_db_loads(urls)
        for url in urls:
            for _ in range(shape.workers * WARM_UP_GETS_PER_WORKER):
                requests.get(f"{url}/categories", timeout=HTTP_TIMEOUT_SECONDS)
        windows.append(
            Window(
                "warm-up", time.monotonic() - started, proxy.calls(), fleet_db_loads(urls) - loads
            )
        )

        def window(
            name: str, traffic: Traffic | None, start: Callable[[], object] = lambda: None
        ) -> Window:
            loads = fleet_db_loads(urls)
            proxy.clear()
            if traffic is not None:
                traffic.take()
            start()
            time.sleep(arguments.seconds)
            calls = proxy.calls()
            answers = traffic.take() if traffic is not None else []
            return Window(name, arguments.seconds, calls, fleet_db_loads(urls) - loads, answers)

        windows.append(window("idle", None))
        readers = arguments.looping_readers
        rate = 0.0 if readers else arguments.rate
        with Traffic(urls, rate, readers or 4).running() as traffic:
            windows.append(window("traffic", traffic))
            windows.append(window("change", traffic, lambda: add_category(urls[0])))
            with changing_every_second(
                urls[0], str(settings["SQLALCHEMY_DATABASE_URI"]), int(arguments.seconds) - 1
            ):
                windows.append(window("changes", traffic))
            time.sleep(SETTLE_SECONDS)  # the last change's loads land before the next window
            with proxy.throttling("GetItem", key=LIST_KEY, share=arguments.throttled_share):
                windows.append(window("throttled", traffic))
            windows.append(window("after throttling", traffic))
            assert ddb.process is not None
            os.kill(ddb.process.pid, signal.SIGSTOP)
            try:
                windows.append(window("hung", traffic))
            finally:
                os.kill(ddb.process.pid, signal.SIGCONT)
    return windows


def add_category(url: str) -> None:
    """One change, through the API as an operator's tool would make it."""
    response = requests.post(
        f"{url}/categories",
        json={"name": f"Bench change {time.time_ns()}"},
        headers=DEV_ADMIN_AUTHORIZATION,
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    response.raise_for_status()


@contextmanager
def changing_every_second(url: str, database_url: str, changes: int) -> Iterator[None]:
    """``changes`` categories added a second apart, in turn through the API and with plain
    SQL: fewer than the window has seconds, so that the last is loaded within it."""
    stop = threading.Event()

    def change() -> None:
        for number in range(changes):
            if stop.wait(1.0):
                return
            if number % 2:
                insert_category(database_url, f"Bench plain SQL {time.time_ns()}")
            else:
                add_category(url)

    changer = threading.Thread(target=change, daemon=True)
    changer.start()
    try:
        yield
    finally:
        stop.set()
        changer.join(HTTP_TIMEOUT_SECONDS)


def model(
    traffic: Window, change: Window, shape: Shape, changes_a_minute: float, body_copies: int
) -> str:
    """The traffic and change windows' terms at fleet scale, with what they assume.

    A change's body is read by the other instances, not by the one that loaded it: so
    the model needs a shape of two instances or more.
    """
    per_instance_reads = traffic.units(reads=True) / traffic.seconds / shape.instances
    per_instance_writes = traffic.units(reads=False) / traffic.seconds / shape.instances
    #: What one change costs each instance but the loader's in reads of the new body.
    body_per_instance = change.body_read_units() / (shape.instances - 1)
    #: What one change writes, once for the fleet (the new body, the pointer, a lease).
    change_writes = (
        change.units(reads=False) - per_instance_writes * shape.instances * change.seconds
    )
    lines = [
        "| instances x workers | read units/s | write units/s | hottest item, share of a "
        "partition | a change's first second on one body copy | on-demand a month |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for instances in MODEL_INSTANCES:
        steady = per_instance_reads * instances
        changes = body_per_instance * instances * changes_a_minute / 60
        reads = steady + changes
        writes = per_instance_writes * instances + change_writes * changes_a_minute / 60
        # The pointer takes the steady reads; each new body the reads of one change,
        # averaged over the minute (they come within the first seconds of it).
        hottest = max(steady, body_per_instance * instances / 60) / PARTITION_READ_UNITS
        # Every instance hears a change at once and reads the new body within a second,
        # each one copy of it at random.
        burst = body_per_instance * instances / body_copies / PARTITION_READ_UNITS
        dollars = (reads * READ_UNIT_DOLLARS + writes * WRITE_UNIT_DOLLARS) * SECONDS_A_MONTH
        lines.append(
            f"| {instances:,} x {MODEL_WORKERS} | {reads:,.0f} | {writes:,.1f} "
            f"| {hottest:.0%} | {burst:.0%} | ${dollars:,.0f} |"
        )
    lines.append(
        f"\nAssumes the traffic window's {per_instance_reads:.2f} read and "
        f"{per_instance_writes:.2f} write units a second per instance hold for 8 workers and "
        f"any request rate (true when they do not grow with workers: compare the shapes' "
        f"rows), and {changes_a_minute:g} change a minute, each costing an instance what "
        f"the change window measured on each instance but the one that loaded it "
        f"({body_per_instance:.1f} read units of the new body, one of its {body_copies} "
        f"copies) and once for the fleet ({change_writes:.0f} write units: the body's "
        f"copies, its pointer, a lease)."
    )
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument(
        "--shapes", default="1x2,1x4,2x2", help="instances x workers, comma-separated"
    )
    parser.add_argument("--categories", type=int, default=10000, help="natural-named categories")
    for flag, default, help_text in (
        ("--seconds", 10.0, "length of each window"),
        ("--rate", 40.0, "GETs a second, fleet-wide"),
        ("--near-ttl", 1.0, "CACHE_NEAR_TTL"),
        ("--near-ttl-while-listening", 5.0, "CACHE_NEAR_TTL_WHILE_LISTENING (PostgreSQL)"),
        ("--throttled-share", 0.7, "share of the list's reads the proxy throttles"),
        ("--db-latency-ms", 0.0, "DB_LATENCY_MS: a slow database shows any load not spared"),
        ("--changes-a-minute", 1.0, "changes a minute, in the model"),
    ):
        parser.add_argument(flag, type=float, default=default, help=f"{help_text} (%(default)s)")
    parser.add_argument(
        "--looping-readers",
        type=int,
        default=0,
        help="readers each sending a GET as soon as its last answered, in place of --rate",
    )
    parser.add_argument(
        "--body-copies",
        type=int,
        default=DEFAULT_BODY_COPIES,
        help="CACHE_DYNAMODB_BODY_COPIES (%(default)s)",
    )
    parser.add_argument(
        "--strategy",
        choices=[strategy.value for strategy in CacheStrategy],
        default=CacheStrategy.INVALIDATE.value,
        help="CATEGORIES_CACHE_STRATEGY (%(default)s)",
    )
    parser.add_argument(
        "--database",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="the catalogue's database: PostgreSQL as deployed (a local server this run "
        "starts), or a SQLite file per fleet (no change listener)",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="write the run into docs/bench-fleet.md and its model into docs/deploy.md",
    )
    parser.add_argument(
        "--app-root",
        type=Path,
        default=REPOSITORY_ROOT,
        help="a checkout of the app to run (another commit, to compare with)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse(argv)
    use_local_aws_credentials()
    shapes = [
        Shape(*(int(number) for number in shape.split("x")))
        for shape in arguments.shapes.split(",")
    ]
    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    catalogue = build_catalogue(workdir, arguments.categories, natural=True)
    rows: list[str] = []
    models: list[str] = []
    with ExitStack() as stack:
        ddb = stack.enter_context(DynamoDBLocal())
        proxy = stack.enter_context(DynamoDBProxy(ddb.endpoint_url))
        postgresql = (
            stack.enter_context(LocalPostgreSQL()) if arguments.database == "postgresql" else None
        )
        for shape in shapes:
            database_url = None if postgresql is None else postgresql.create_database()
            windows = {
                window.name: window
                for window in measure(shape, catalogue, ddb, proxy, arguments, database_url)
            }
            rows += [window.row(shape) for window in windows.values()]
            print("\n".join([HEADER, *rows[-len(windows) :]]), flush=True)
            if shape.instances < 2:
                continue  # a change's cost is what the *other* instances read
            models.append(
                f"\nModel from {shape} ({arguments.categories:,} natural-named categories, "
                f"{arguments.rate:g} GET/s):\n\n"
                + model(
                    windows["traffic"],
                    windows["change"],
                    shape,
                    arguments.changes_a_minute,
                    arguments.body_copies,
                )
            )
    summary = (
        f"{arguments.categories:,} natural-named categories in {arguments.database}, "
        f"windows of {arguments.seconds:g} s, "
        + (
            f"{arguments.looping_readers} looping readers, "
            if arguments.looping_readers
            else f"{arguments.rate:g} GET/s, "
        )
        + f"{arguments.strategy}, {arguments.body_copies} body copies, "
        f"database latency {arguments.db_latency_ms:g} ms, near-cache {arguments.near_ttl:g} s "
        f"({arguments.near_ttl_while_listening:g} s while listening on PostgreSQL)"
    )
    run = "\n".join([summary, "", HEADER, *rows, *models])
    print(f"\n{run}")
    if arguments.write_docs and models:
        measured_on = time.strftime("%Y-%m-%d")
        write_generated(BENCH_FLEET_PAGE, "run", f"Measured on {measured_on}: {run}")
        write_generated(
            DEPLOY_GUIDE, "model", f"{models[-1].strip()}\n\n(`make bench-fleet`, {measured_on}.)"
        )
    return 0


def write_generated(page: Path, block: str, content: str) -> None:
    """Replace what ``page`` holds between its ``bench-fleet:<block>`` markers with ``content``.

    The docs' numbers come from a run, never from a hand: the markers stay, so the next
    run replaces them again (``tests/project/test_docs.py`` checks the two pages agree).
    """
    start, end = f"<!-- bench-fleet:{block} -->", f"<!-- /bench-fleet:{block} -->"
    text = page.read_text()
    before, found, rest = text.partition(start)
    _, found_end, after = rest.partition(end)
    if not found or not found_end:
        raise ValueError(f"{page} has no {start} ... {end} block")
    page.write_text(f"{before}{start}\n{content}\n{end}{after}")
    print(f"wrote {page.relative_to(REPOSITORY_ROOT)} ({block})")


if __name__ == "__main__":
    raise SystemExit(main())
