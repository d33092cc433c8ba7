"""Randomized faults against a fleet as deployed, and a checker over what every read showed.

The scripted coherence scenarios (devtools/coherence.py) inject one fault, make one
write and watch; this runs a seeded schedule of faults (devtools/chaos_schedule.py)
under continuous traffic and hands the whole history to the checker
(devtools/chaos_checker.py), Jepsen-style::

    DynamoDB Local  <- PartitionProxy <-  instance-a (gunicorn, 2 workers)  <- readers (pinned)
                                          instance-b (gunicorn, 2 workers)  <- writer (API)
    SQLite file, or PostgreSQL <- PartitionProxy (drops, slows)             <- writer (plain SQL)

- two ``gunicorn wsgi:app`` instances of two workers each, one DynamoDB table and one
  database shared, each instance with its own CATALOGUE_EVENTS_DIR (its own host), the
  deployed settings: ``CACHE_NEAR_TTL=1`` (deploy/cloudformation.yaml's NearCacheTtl),
  the 10 s breaker cool-down and every other default;
- one reader per instance GETs /categories on each of its workers in turn (one kept-alive
  connection pinned to each: devtools/pinned_workers.py), recording what each answer
  listed, which worker gave it, ``X-Cache`` and the ``X-Request-Id`` it sent;
- one writer inserts and deletes categories, through the API (the admin token, on either
  instance) or with plain SQL on the database (as a back-office tool, on its own path);
- the faults: see devtools/chaos_schedule.py (the plan) and devtools/chaos_faults.py
  (how each is carried out). Then every fault is healed, the readers go on
  for :data:`SETTLE_SECONDS`, and each worker's last answer must list what the database holds.

Every process is on 127.0.0.1 and stopped when the run ends (however it ends), the
run's length is bounded by ``seconds`` plus start-up and settling. A violation is
printed with the app's own log lines for its request ids and the warnings around it.
``python -m scripts.chaos`` (``make chaos``) runs seeds and prints the table;
tests/blackbox/test_chaos.py runs a short seed per database and the planted faults.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any

import sqlalchemy

from cache_backends.dynamodb.settings import DEFAULT_BREAKER_COOLDOWN
from devtools import REPOSITORY_ROOT
from devtools.chaos_checker import (
    DELETE,
    SQL,
    WRITE_KINDS,
    Bounds,
    FaultWindow,
    Read,
    Report,
    Violation,
    Write,
    check,
)
from devtools.chaos_evidence import describe, first_of_each, log_records
from devtools.chaos_faults import FaultInjector, Fleet, chaos_database
from devtools.chaos_schedule import (
    MIN_LIVE_NAMES,
    next_write,
    plan_faults,
    plan_writes,
)
from devtools.coherence import HEALED_BOUND_SECONDS, STRATEGIES
from devtools.credentials import DEV_ADMIN_AUTHORIZATION, use_local_aws_credentials
from devtools.dynamodb_local import DynamoDBLocal
from devtools.fleet import (
    INSTANCE_NAMES,
    Instance,
    dynamodb_settings,
    gunicorn_instance,
    prepare,
    wait_until_healthy,
)
from devtools.partition import PartitionProxy
from devtools.pinned_workers import HTTP_TIMEOUT_SECONDS, PinnedWorkers, request
from devtools.postgresql import LocalPostgreSQL
from devtools.processes import worker_pids
from ecommerce.config import DEFAULTS

WORKERS_PER_INSTANCE = 2
#: deploy/cloudformation.yaml's NearCacheTtl default, written to FLASK_CACHE_NEAR_TTL.
DEPLOYED_NEAR_TTL_SECONDS = 1.0
#: The bounds the checker holds every run to: the deployed settings' promises (see
#: Bounds for each one's source), whatever a run's overrides set (a planted fault).
DEPLOYED_RECONCILE_SECONDS = float(DEFAULTS["CATEGORIES_CACHE_RECONCILE_SECONDS"])
#: The harness's own allowance, not a promise of the app: see Bounds.
MACHINE_SLACK_SECONDS = 1.0
#: Between a reader's rounds over its instance's workers: ~10 answers a second per
#: worker, and CPU left for the app on a 2-core machine.
READ_INTERVAL_SECONDS = 0.1
#: After the last fault healed: longer than every bound, so each worker's last answer
#: must list what the database holds.
SETTLE_SECONDS = DEPLOYED_RECONCILE_SECONDS + DEPLOYED_NEAR_TTL_SECONDS + 2 * MACHINE_SLACK_SECONDS
#: Rounds of repinning at the end, for a worker forked after a SIGKILL (seconds of imports).
FINAL_REPIN_ROUNDS = 50
#: Violations printed with their evidence (one per kind and write); the rest are counted.
VIOLATIONS_SHOWN = 8
REQUEST_ID_HEADER = "X-Request-Id"


def bounds_for(database: str) -> Bounds:
    return Bounds(
        near_ttl=DEPLOYED_NEAR_TTL_SECONDS,
        reconcile=DEPLOYED_RECONCILE_SECONDS,
        heal=HEALED_BOUND_SECONDS,
        slack=MACHINE_SLACK_SECONDS,
        notifications=database == "postgresql",
        cooldown=DEFAULT_BREAKER_COOLDOWN,
        lease=float(DEFAULTS["CATEGORIES_CACHE_LEASE_SECONDS"]),
    )


@dataclass(frozen=True)
class ChaosOptions:
    """One run: ``strategy`` None picks one from the seed (seeds 1, 2, 3 cover all three);
    ``overrides``: app settings on top of the deployed ones (a planted fault);
    ``faults`` False: traffic only (the planted faults' runs); ``write_kinds``: which of
    WRITE_KINDS the writer makes (plain-SQL inserts alone show what the reconciler repairs)."""

    seed: int
    database: str
    seconds: float
    strategy: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    faults: bool = True
    write_kinds: tuple[str, ...] = WRITE_KINDS

    @property
    def chosen_strategy(self) -> str:
        return self.strategy or STRATEGIES[self.seed % len(STRATEGIES)]

    @property
    def prefix(self) -> str:
        """Every category the run creates is named ``<prefix><n>``."""
        return f"Chaos{self.seed}N"


# --- the run's recorders ---------------------------------------------------------------


@dataclass
class History:
    """What the readers, the writer and the faults recorded; appended from their threads
    (list.append is atomic under the GIL)."""

    reads: list[Read] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    #: time.time() - time.monotonic(): turns a record's time into the logs' clock.
    wall_offset: float = field(default_factory=lambda: time.time() - time.monotonic())


def read_once(connection: HTTPConnection, worker: str, request_id: str) -> tuple[Read, bool]:
    """One GET /categories; the Read and whether the connection is still usable."""
    sent = time.monotonic()
    try:
        status, body, headers = request(
            connection, "GET", "/categories", extra_headers={REQUEST_ID_HEADER: request_id}
        )
    except (OSError, HTTPException, ValueError):
        return Read(worker, sent, time.monotonic(), None, "-", None, request_id), False
    names = frozenset(category["name"] for category in body) if status == 200 else None
    read = Read(
        worker, sent, time.monotonic(), status, headers.get("X-Cache", "-"), names, request_id
    )
    return read, True


class Reader:
    """GETs on every worker of one instance in turn until stopped.

    Pinning a connection to a new worker (after a SIGKILL) costs one GET that is not
    recorded: PinnedWorkers needs an answer to learn which worker took the connection.
    """

    def __init__(self, instance: Instance, history: History, tag: str) -> None:
        self.instance = instance
        self.history = history
        self.workers = PinnedWorkers(instance)
        self.tag = tag
        self.count = 0

    def next_request_id(self) -> str:
        self.count += 1
        return f"{self.tag}-{self.instance.name}-r{self.count}"

    def round(self) -> dict[str, Read]:
        answers = {}
        for pid, connection in list(self.workers.connections.items()):
            worker = f"{self.instance.name}/{pid}"
            read, usable = read_once(connection, worker, self.next_request_id())
            self.history.reads.append(read)
            answers[worker] = read
            if not usable:
                connection.close()
                del self.workers.connections[pid]
        return answers

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.workers.repin()
            self.round()
            stop.wait(READ_INTERVAL_SECONDS)

    def final_round(self) -> dict[str, Read | None]:
        """Each live worker's answer (None: it could not be reached)."""
        for _ in range(FINAL_REPIN_ROUNDS):
            self.workers.repin()
            if set(self.workers.connections) >= worker_pids(self.instance.process.pid):
                break
            time.sleep(READ_INTERVAL_SECONDS)
        answers: dict[str, Read | None] = {
            f"{self.instance.name}/{pid}": None for pid in worker_pids(self.instance.process.pid)
        }
        answers.update(self.round())
        return answers


class Writer:
    """Inserts and deletes the run's categories, through the API or with plain SQL."""

    def __init__(self, options: ChaosOptions, fleet: Fleet, history: History) -> None:
        self.options = options
        self.fleet = fleet
        self.history = history
        self.rng = plan_writes(options.seed)
        self.count = 0
        #: Names whose insert was acknowledged and whose delete was not sent: their ids.
        self.live: dict[str, int] = {}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            planned = next_write(self.rng, self.options.write_kinds)
            path, _, operation = planned.kind.partition("-")
            if operation == DELETE and len(self.live) > MIN_LIVE_NAMES:
                name, category_id = next(iter(self.live.items()))
                del self.live[name]
                self.write(planned.kind, name, category_id)
            else:
                self.count += 1
                self.write(f"{path}-insert", f"{self.options.prefix}{self.count}", None)
            stop.wait(planned.pause)

    def write(self, kind: str, name: str, category_id: int | None) -> None:
        request_id = f"{self.options.prefix}-w{self.count}-{kind}-{uuid.uuid4().hex[:6]}"
        sent = time.monotonic()
        status: int | None = None
        try:
            if kind.startswith(SQL):
                created = self._sql(name, category_id)
                status = 200
            else:
                status, created = self._api(name, category_id, request_id)
        except (OSError, HTTPException, sqlalchemy.exc.SQLAlchemyError):
            created = None
        answered = time.monotonic()
        acknowledged = status is not None and 200 <= status < 300
        self.history.writes.append(
            Write(kind, name, sent, answered, acknowledged, status, request_id)
        )
        if acknowledged and created is not None:
            self.live[name] = created

    def _sql(self, name: str, category_id: int | None) -> int | None:
        if category_id is None:
            return self.fleet.database.insert(name)
        self.fleet.database.delete(category_id)
        return None

    def _api(self, name: str, category_id: int | None, request_id: str) -> tuple[int, int | None]:
        instance = self.fleet.instances[self.count % len(self.fleet.instances)]
        connection = HTTPConnection("127.0.0.1", instance.port, timeout=HTTP_TIMEOUT_SECONDS)
        headers = {REQUEST_ID_HEADER: request_id}
        try:
            if category_id is None:
                status, body, _ = request(
                    connection, "POST", "/categories", {"name": name}, headers
                )
                return status, int(body["id"]) if status == 201 else None
            status, _, _ = request(
                connection,
                "DELETE",
                f"/categories/{category_id}",
                extra_headers=headers | DEV_ADMIN_AUTHORIZATION,
            )
            return status, None
        finally:
            connection.close()


# --- one run -------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    options: ChaosOptions
    report: Report
    faults: list[FaultWindow]
    reads: int
    unanswered: int
    evidence: list[str]

    @property
    def violations(self) -> list[Violation]:
        return self.report.violations

    def fault_counts(self) -> Counter[str]:
        return Counter(fault.kind for fault in self.faults)


def app_settings(options: ChaosOptions, endpoint_url: str, database_url: str) -> dict[str, Any]:
    """The deployed settings (those deploy/cloudformation.yaml writes; the rest default),
    DynamoDB Local's table created by the app (it is gone after a restart), the run's
    overrides on top."""
    return {
        **dynamodb_settings(endpoint_url, f"chaos-{options.seed}-{uuid.uuid4().hex[:8]}"),
        "CATEGORIES_CACHE_STRATEGY": options.chosen_strategy,
        "CACHE_NEAR_TTL": DEPLOYED_NEAR_TTL_SECONDS,
        "CACHE_DYNAMODB_CREATE_TABLE": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "LOG_LEVEL": "INFO",
        **options.overrides,
    }


@contextmanager
def running_fleet(
    options: ChaosOptions,
    workdir: Path,
    postgresql: LocalPostgreSQL | None = None,
    dynamodb: DynamoDBLocal | None = None,
) -> Iterator[Fleet]:
    """DynamoDB Local behind a proxy, the database, two instances; all stopped after.

    ``dynamodb``: a running DynamoDB Local to share (a test session's), only for a run
    without faults: the faults stop and restart the run's own.
    """
    use_local_aws_credentials()
    if dynamodb is not None and options.faults:
        raise ValueError("a shared DynamoDB Local is for runs without faults")
    with ExitStack() as stack:
        if dynamodb is None:
            dynamodb = stack.enter_context(DynamoDBLocal())
            dynamodb.warm_up()
        cache_proxy = stack.enter_context(PartitionProxy(dynamodb.port))
        database = stack.enter_context(chaos_database(options.database, workdir, postgresql))
        settings = app_settings(options, cache_proxy.endpoint_url, database.app_url)
        prepare(settings, REPOSITORY_ROOT, quiet=True)
        instances = tuple(
            stack.enter_context(gunicorn_instance(name, settings, workdir, WORKERS_PER_INSTANCE))
            for name in INSTANCE_NAMES
        )
        for instance in instances:
            wait_until_healthy(instance.url, instance.process, instance.log_path)
        yield Fleet(dynamodb, cache_proxy, database, instances)


def run_chaos(
    options: ChaosOptions,
    *,
    postgresql: LocalPostgreSQL | None = None,
    dynamodb: DynamoDBLocal | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> RunOutcome:
    """One seeded run, checked; everything it started is stopped when it returns.

    ``postgresql`` and ``dynamodb``: servers to share (a test session's) instead of
    starting the run's own (see :func:`running_fleet`).
    """
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="ecommerce-chaos-"))
            )
        fleet = stack.enter_context(running_fleet(options, workdir, postgresql, dynamodb))
        history = History()
        plan = (
            plan_faults(options.seed, options.seconds, options.database) if options.faults else []
        )
        progress(
            f"seed {options.seed}, {options.database}, {options.chosen_strategy}: "
            f"{len(plan)} faults planned over {options.seconds:.0f} s"
        )
        readers = [
            Reader(instance, history, f"chaos{options.seed}") for instance in fleet.instances
        ]
        for reader in readers:
            reader.workers.pin_all()
        writer = Writer(options, fleet, history)
        injector = FaultInjector(fleet, history.faults, plan)
        traffic_stop, reads_stop = threading.Event(), threading.Event()
        # However the run ends (Ctrl-C included), the threads stop before the fleet does.
        stack.callback(reads_stop.set)
        stack.callback(traffic_stop.set)
        started = time.monotonic()
        threads = [
            threading.Thread(target=reader.run, args=(reads_stop,), daemon=True)
            for reader in readers
        ]
        threads.append(threading.Thread(target=writer.run, args=(traffic_stop,), daemon=True))
        faults_thread = threading.Thread(
            target=injector.run, args=(started, traffic_stop), daemon=True
        )
        for thread in [*threads, faults_thread]:
            thread.start()
        try:
            traffic_stop.wait(options.seconds)
        finally:
            traffic_stop.set()
            faults_thread.join()
            threads[-1].join()
            injector.heal_everything()
        progress(f"faults done: {dict(Counter(f.kind for f in history.faults))}; settling")
        time.sleep(SETTLE_SECONDS)
        reads_stop.set()
        for thread in threads[:-1]:
            thread.join()
        final_reads: dict[str, Read | None] = {}
        for reader in readers:
            final_reads.update(reader.final_round())
            reader.workers.close()
        final_rows = fleet.database.names(options.prefix)
        report = check(
            writes=history.writes,
            reads=history.reads,
            faults=history.faults,
            bounds=bounds_for(options.database),
            final_reads=final_reads,
            final_rows=final_rows,
            prefix=options.prefix,
        )
        records = sorted(log_records(fleet.instances), key=lambda record: record["epoch"])
        evidence = [
            describe(violation, alike, records, history.faults, history.wall_offset)
            for violation, alike in first_of_each(report.violations)[:VIOLATIONS_SHOWN]
        ]
        return RunOutcome(
            options,
            report,
            list(history.faults),
            len(history.reads),
            sum(1 for read in history.reads if read.status is None),
            evidence,
        )


# --- the table ---------------------------------------------------------------------------

TABLE_HEADER = (
    "seed",
    "database",
    "strategy",
    "seconds",
    "faults injected",
    "reads checked",
    "writes acknowledged",
    *(f"worst lag: {kind}" for kind in WRITE_KINDS),
    "bound allowed: median / longest",
    "slowest GET (database up)",
    "violations",
)


def table_row(outcome: RunOutcome) -> list[str]:
    report = outcome.report
    faults = ", ".join(f"{kind} x{count}" for kind, count in sorted(outcome.fault_counts().items()))
    return [
        str(outcome.options.seed),
        outcome.options.database,
        f"`{outcome.options.chosen_strategy}`",
        f"{outcome.options.seconds:.0f}",
        faults or "none",
        str(report.reads_checked),
        str(sum(report.acknowledged.values())),
        *(
            f"{report.worst_lag[kind]:.2f} s" if kind in report.worst_lag else "-"
            for kind in WRITE_KINDS
        ),
        f"{report.allowed_median:.2f} / {report.allowed_longest:.2f} s",
        f"{report.slowest_read:.2f} s",
        str(len(report.violations)),
    ]


def markdown_table(outcomes: Sequence[RunOutcome]) -> str:
    lines = [
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "|".join("---:" if i >= 3 else "---" for i in range(len(TABLE_HEADER))) + "|",
    ]
    lines += ["| " + " | ".join(table_row(outcome)) + " |" for outcome in outcomes]
    return "\n".join(lines)
