"""Does every committed change reach every cache, whatever fails in between?

Black-box scenarios against ``gunicorn wsgi:app`` (the repository's gunicorn.conf.py,
two workers) on the DynamoDB backend, with DynamoDB Local behind a
:class:`~devtools.partition.PartitionProxy` that can drop all traffic (a partition:
requests time out and are never executed). Each scenario changes the catalogue
while something fails, then GETs ``/categories`` on *every* worker (one kept-alive
connection pinned to each: :mod:`devtools.pinned_workers`) and records, per answer,
whether it shows the change (:mod:`devtools.convergence`)::

    partition       warm cache; partition; POST (its latency); heal; watch the workers
    breaker-open    the same, but GETs during the partition open every worker's
                    circuit before the POST commits
    sql-insert      a row inserted, renamed or deleted with plain SQL (sqlite3 on the
    sql-rename      server's database file, as a back-office tool would), no API call
    sql-delete
    writer-killed   the worker that answered a refresh-async POST SIGKILLed right after
                    it answered, its refresh still loading (a slow database)
    long-outage     refresh-async with the deployed 10 s breaker cool-down: a partition
                    longer than it, POSTs and GETs on every worker during it (answered
                    by the database), heal; no list older than those shown comes back

Every server of a run starts from a copy of one seeded database and a table of
its own; the partition scenarios run once per strategy, plain SQL and the killed
writer once (see :func:`run_scenarios`).

What is measured: the POST's latency, the time until every GET shows the change
(from the heal, the SQL commit, or the kill), and whether a worker that had shown
the change served a list without it afterwards (the old list coming back). Watching
goes on past the breaker's cool-down, when a circuit opened by the partition closes
again and the cache's old entry becomes readable.

``python -m scripts.coherence`` prints the coherence Markdown table (before/after);
tests/blackbox/test_coherence.py runs the same functions and asserts the issue's bounds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from devtools import REPOSITORY_ROOT
from devtools.convergence import POLL_INTERVAL_SECONDS, Convergence, watch
from devtools.credentials import use_local_aws_credentials
from devtools.dynamodb_local import DynamoDBLocal
from devtools.fleet import Instance, gunicorn_instance, prepare, wait_until_healthy
from devtools.partition import PartitionProxy
from devtools.pinned_workers import PinnedWorkers, request
from devtools.stampede import Stage
from ecommerce.categories.names import name_key

STRATEGIES = ("invalidate", "write-through", "refresh-async")
WORKERS = 2
#: Short, so watching past it stays quick: the old list came back when the circuit closed.
BREAKER_COOLDOWN_SECONDS = 2
#: The app's default (CACHE_DYNAMODB_BREAKER_FAILURES): consecutive failures that open it.
BREAKER_FAILURES = 5
#: Issue 17's "Done when" bounds.
POST_BUDGET_SECONDS = 1.0
HEALED_BOUND_SECONDS = 3.0
SQL_BOUND_SECONDS = 6.0
KILLED_WRITER_BOUND_SECONDS = 8.0
#: The writer-killed scenario is about a cache update that runs *after* the answer:
#: refresh-async's background refresh, which a slow database keeps in flight when the
#: worker dies (with a 0 ms database it lands before the SIGKILL, and nothing is lost).
KILLED_WRITER_STRATEGY = "refresh-async"
KILLED_WRITER_DB_LATENCY_MS = 1000
#: The issue's partition "drops traffic for a second"; longer if the POST takes longer.
PARTITION_SECONDS = 1.0
#: After a heal, watch at least past the probe that closes a circuit the partition opened
#: (at most one cool-down after the heal) and a little more.
PAST_COOLDOWN_SECONDS = BREAKER_COOLDOWN_SECONDS + 1.5
#: Opening every worker's circuit takes a few GETs each; a machine this slow is broken.
BREAKER_OPEN_DEADLINE_SECONDS = 20.0
#: Warming (GET until HIT on every worker) is milliseconds, or a DynamoDB Local hiccup.
WARM_DEADLINE_SECONDS = 20.0
SQLITE_URI_PREFIX = "sqlite:///"
TEMPLATE_DATABASE_NAME = "seeded-template.sqlite"
SCENARIOS = (
    "partition",
    "breaker-open",
    "sql-insert",
    "sql-rename",
    "sql-delete",
    "writer-killed",
    "long-outage",
)
SQL_CHANGES = ("insert", "rename", "delete")
#: The long outage: the deployed cool-down (deploy/cloudformation.yaml's default), not the
#: short one above, and an outage longer than it, so that every circuit opens, probes and
#: opens again while writes are owed; a database as slow as a loaded one, so that the
#: refreshes the owed stale marks start are still loading when the circuits close.
LONG_OUTAGE_STRATEGY = "refresh-async"
DEPLOYED_BREAKER_COOLDOWN_SECONDS = 10
LONG_OUTAGE_SECONDS = DEPLOYED_BREAKER_COOLDOWN_SECONDS + 2.0
LONG_OUTAGE_WRITES = 3
LONG_OUTAGE_DB_LATENCY_MS = 150


# --- a running server ------------------------------------------------------------------


@dataclass
class Server:
    """gunicorn with two workers on its own SQLite file and table, behind the proxy."""

    strategy: str
    instance: Instance
    workers: PinnedWorkers
    database_path: Path
    #: Names given to categories, so that scenarios on one server never collide.
    created: int = 0

    def new_name(self, scenario: str) -> str:
        self.created += 1
        return f"{scenario.title().replace('-', '')}{self.created}"

    def writer(self) -> tuple[int, HTTPConnection]:
        """A worker and its connection, to send a write through (its pid: known)."""
        pid = min(self.workers.connections)
        return pid, self.workers.connections[pid]

    def watch(
        self,
        shows_change: Callable[[list[dict[str, Any]]], bool],
        since: float,
        bound_seconds: float,
        *,
        expected_workers: int = WORKERS,
        at_least_seconds: float = 0.0,
    ) -> Convergence:
        """:func:`~devtools.convergence.watch` this server's workers, all of them by default.

        Every scenario ends this way, from its heal, commit or kill; only one that
        killed a worker expects fewer answers.
        """
        return watch(
            self.workers,
            shows_change,
            since,
            bound_seconds=bound_seconds,
            expected_workers=expected_workers,
            at_least_seconds=at_least_seconds,
        )


def server_settings(stage: Stage, strategy: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh database and table on the stage's endpoint (the proxy) for ``strategy``."""
    settings: dict[str, Any] = {
        "CATEGORIES_CACHE_STRATEGY": strategy,
        "CACHE_DYNAMODB_CREATE_TABLE": True,
        "CACHE_DYNAMODB_BREAKER_COOLDOWN": BREAKER_COOLDOWN_SECONDS,
        "CACHE_DYNAMODB_BREAKER_FAILURES": BREAKER_FAILURES,
    }
    return stage.settings("dynamodb", **{**settings, **overrides})


def seeded_database(stage: Stage, settings: Mapping[str, Any], template: Path) -> None:
    """The database of ``settings`` seeded by init-db, run once per stage into ``template``.

    init-db is a Flask process of its own (imports, migrations): seconds on a busy
    2-core machine, for every server. The first server's database is made by it
    (and its table, by prepare); later servers get a copy of that seeded file,
    and their workers create their own table at start-up (CACHE_DYNAMODB_CREATE_TABLE;
    workers racing to create it is handled by the backend).
    """
    database_path = Path(settings["SQLALCHEMY_DATABASE_URI"].removeprefix(SQLITE_URI_PREFIX))
    if not template.exists():
        prepare(settings, stage.app_root, quiet=True)
        source, target = database_path, template
    else:
        source, target = template, database_path
    # SQLite's backup API: a consistent copy whatever journal mode init-db left.
    with (
        contextlib.closing(sqlite3.connect(source)) as copied,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        copied.backup(copy)


@contextmanager
def serving(stage: Stage, strategy: str, template: Path, **overrides: Any) -> Iterator[Server]:
    """``gunicorn wsgi:app`` with two workers, seeded, its connections pinned; stopped after.

    ``stage.dynamodb_endpoint_url`` must be the proxy's, healed while this starts
    (init-db and start-up create and describe the table).
    """
    settings = server_settings(stage, strategy, overrides)
    database_path = Path(settings["SQLALCHEMY_DATABASE_URI"].removeprefix(SQLITE_URI_PREFIX))
    seeded_database(stage, settings, template)
    name = f"coherence-{strategy}-{stage.runs}"
    with gunicorn_instance(
        name, settings, stage.workdir, WORKERS, app_root=stage.app_root
    ) as instance:
        wait_until_healthy(instance.url, instance.process, instance.log_path)
        workers = PinnedWorkers(instance)
        try:
            workers.pin_all()
            yield Server(strategy, instance, workers, database_path)
        finally:
            workers.close()


# --- warming, and what the watch looks for ---------------------------------------------


def warm(server: Server) -> None:
    """GET on every worker until each answers a HIT: the list is cached, the circuits closed."""
    deadline = time.monotonic() + WARM_DEADLINE_SECONDS
    while True:
        answers = server.workers.get_everywhere()
        if answers and all(answer.cache == "HIT" for answer in answers.values()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cache did not warm up: {answers}")
        time.sleep(POLL_INTERVAL_SECONDS)


def has_name(name: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda categories: any(category["name"] == name for category in categories)


def lacks_id(category_id: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda categories: all(category["id"] != category_id for category in categories)


# --- scenarios -------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One row of the table."""

    scenario: str
    strategy: str
    convergence: Convergence
    post_status: int | None = None
    post_seconds: float | None = None
    notes: Sequence[str] = field(default_factory=tuple)

    def row(self) -> list[str]:
        post = (
            "-"
            if self.post_seconds is None
            else f"{self.post_status} after {self.post_seconds:.2f} s"
        )
        return [
            f"{self.scenario}, `{self.strategy}`",
            post,
            self.convergence.describe(),
            "**yes**" if self.convergence.old_list_came_back else "no",
        ]


def post_category(connection: HTTPConnection, name: str) -> tuple[int, float]:
    """POST ``name`` on ``connection``: status and seconds."""
    started = time.monotonic()
    status, _, _ = request(connection, "POST", "/categories", {"name": name})
    return status, time.monotonic() - started


#: What /readyz reports for a circuit that refuses calls: open, or open with its one
#: probe due (half-open: a background retry may be probing it at that moment).
NOT_CLOSED_CIRCUIT_STATES = frozenset({"open", "half-open"})


def circuit_states(server: Server) -> dict[int, str | None]:
    """Each worker's circuit as its /readyz reports it (no DynamoDB call while open)."""
    states = {}
    for pid, connection in server.workers.connections.items():
        _, report, _ = request(connection, "GET", "/readyz")
        states[pid] = (report or {}).get("cache", {}).get("circuit")
    return states


def open_every_circuit(server: Server) -> dict[int, str | None]:
    """GET on every worker (each GetItem times out) until no worker's circuit is closed.

    Returns the last states seen: all in NOT_CLOSED_CIRCUIT_STATES, unless the
    deadline passed first.
    """
    deadline = time.monotonic() + BREAKER_OPEN_DEADLINE_SECONDS
    states: dict[int, str | None] = {}
    while time.monotonic() < deadline:
        for _ in range(BREAKER_FAILURES):
            server.workers.get_everywhere()
        states = circuit_states(server)
        if states and set(states.values()) <= NOT_CLOSED_CIRCUIT_STATES:
            break
    return states


def partition_during_post(
    server: Server, proxy: PartitionProxy, *, breaker_open_first: bool = False
) -> Outcome:
    """Warm, partition, (open the circuits,) POST, heal once a second has passed, watch."""
    scenario = "breaker-open" if breaker_open_first else "partition"
    name = server.new_name(scenario)
    warm(server)
    notes = []
    with proxy.partitioned():
        partitioned_at = time.monotonic()
        if breaker_open_first:
            states = open_every_circuit(server)
            if not states or not set(states.values()) <= NOT_CLOSED_CIRCUIT_STATES:
                notes.append(f"not every circuit open before the POST: {states}")
        _, connection = server.writer()
        status, seconds = post_category(connection, name)
        time.sleep(max(0.0, partitioned_at + PARTITION_SECONDS - time.monotonic()))
    healed_at = time.monotonic()
    convergence = server.watch(
        has_name(name), healed_at, HEALED_BOUND_SECONDS, at_least_seconds=PAST_COOLDOWN_SECONDS
    )
    return Outcome(scenario, server.strategy, convergence, status, seconds, tuple(notes))


def plain_sql_change(server: Server, change: str) -> Outcome:
    """Insert, rename or delete one category with plain SQL; watch every worker serve it.

    A rename or delete acts on a category created through the API first (and
    served by every worker), so each change has a category of its own and the
    three run in any order on one server.
    """
    if change not in SQL_CHANGES:
        raise ValueError(f"unknown change {change!r}; choose from {SQL_CHANGES}")
    name = server.new_name(f"sql-{change}")
    if change == "insert":
        warm(server)
        _sql(
            server.database_path,
            "INSERT INTO categories (name, name_key) VALUES (?, ?)",
            (name, name_key(name)),
        )
        shows_change = has_name(name)
    else:
        category_id = _created_through_the_api(server, name)
        if change == "rename":
            renamed = f"{name}Renamed"
            _sql(
                server.database_path,
                "UPDATE categories SET name = ?, name_key = ? WHERE id = ?",
                (renamed, name_key(renamed), category_id),
            )
            shows_change = _renamed(name, renamed)
        else:
            _sql(server.database_path, "DELETE FROM categories WHERE id = ?", (category_id,))
            shows_change = lacks_id(category_id)
    changed_at = time.monotonic()
    convergence = server.watch(shows_change, changed_at, SQL_BOUND_SECONDS)
    return Outcome(f"sql-{change}", server.strategy, convergence)


def _sql(database_path: Path, statement: str, parameters: Sequence[Any]) -> int:
    """One statement in its own transaction, as a back-office tool runs it: the new row id."""
    with contextlib.closing(sqlite3.connect(database_path)) as connection, connection:
        cursor = connection.execute(statement, parameters)
        return cursor.lastrowid or 0


def _renamed(old: str, new: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda categories: has_name(new)(categories) and not has_name(old)(categories)


def _created_through_the_api(server: Server, name: str) -> int:
    """POST ``name`` with nothing failing; its id once every worker serves it as a HIT."""
    _, connection = server.writer()
    status, body, _ = request(connection, "POST", "/categories", {"name": name})
    if status != 201:
        raise RuntimeError(f"POST {name!r} answered {status}: {body}")
    deadline = time.monotonic() + WARM_DEADLINE_SECONDS
    while True:
        answers = server.workers.get_everywhere().values()
        if all(answer.cache == "HIT" and has_name(name)(answer.categories) for answer in answers):
            return int(body["id"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name!r}, created through the API, is not served: {answers}")
        time.sleep(POLL_INTERVAL_SECONDS)


def writer_killed_after_post(server: Server) -> Outcome:
    """POST on one worker's connection, SIGKILL that worker once the answer is in, watch.

    A write's cache update that runs after the answer (refresh-async's background
    refresh) dies with the worker; what remains is the stale mark and the lease.
    Serve with KILLED_WRITER_STRATEGY and KILLED_WRITER_DB_LATENCY_MS (see there).
    Last on its server: gunicorn is still booting the replacement afterwards.
    """
    name = server.new_name("writer-killed")
    warm(server)
    pid, connection = server.writer()
    status, seconds = post_category(connection, name)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # The survivor must show it; the replacement's answers count whenever it has booted
    # (seconds of imports on a busy machine: gunicorn's time, not the cache's).
    convergence = server.watch(
        has_name(name), killed_at, KILLED_WRITER_BOUND_SECONDS, expected_workers=WORKERS - 1
    )
    return Outcome("writer-killed", server.strategy, convergence, status, seconds)


# --- the whole table -------------------------------------------------------------------


def serving_long_outage(stage: CoherenceStage) -> contextlib.AbstractContextManager[Server]:
    """A server for :func:`long_outage`: the deployed cool-down, a slow database."""
    return stage.serving(
        LONG_OUTAGE_STRATEGY,
        CACHE_DYNAMODB_BREAKER_COOLDOWN=DEPLOYED_BREAKER_COOLDOWN_SECONDS,
        DB_LATENCY_MS=LONG_OUTAGE_DB_LATENCY_MS,
    )


def long_outage(server: Server, proxy: PartitionProxy) -> Outcome:
    """Warm; a partition longer than the cool-down with POSTs and GETs on every worker
    during it; heal; watch past the cool-down that every worker shows every write.

    The randomized fault run's bug: the owed stale marks land after the heal on the list
    the outage left in the cache, and a worker served that old list as STALE while the
    refresh loaded, so writes it had shown vanished again 5-7 s after the heal.
    """
    warm(server)
    names: list[str] = []
    statuses: list[int] = []
    with proxy.partitioned():
        partitioned_at = time.monotonic()
        for write in range(1, LONG_OUTAGE_WRITES + 1):
            names.append(server.new_name("long-outage"))
            _, connection = server.writer()
            status, _ = post_category(connection, names[-1])
            statuses.append(status)
            server.workers.get_everywhere()  # shown by every worker: loaded from the database
            pause_until = partitioned_at + write * LONG_OUTAGE_SECONDS / LONG_OUTAGE_WRITES
            time.sleep(max(0.0, pause_until - time.monotonic()))
    healed_at = time.monotonic()
    convergence = server.watch(
        lambda categories: all(has_name(name)(categories) for name in names),
        healed_at,
        HEALED_BOUND_SECONDS,
        at_least_seconds=DEPLOYED_BREAKER_COOLDOWN_SECONDS + 1.5,
    )
    notes = () if set(statuses) == {201} else (f"POST statuses: {statuses}",)
    return Outcome("long-outage", server.strategy, convergence, statuses[-1], None, notes)


@dataclass
class CoherenceStage:
    """DynamoDB Local, the proxy in front of it, and the run's folder."""

    proxy: PartitionProxy
    stage: Stage

    @property
    def template_database(self) -> Path:
        """The seeded SQLite file every server of the stage starts from a copy of."""
        return self.stage.workdir / TEMPLATE_DATABASE_NAME

    @contextmanager
    def serving(self, strategy: str, **overrides: Any) -> Iterator[Server]:
        with serving(self.stage, strategy, self.template_database, **overrides) as server:
            yield server


def coherence_stage(
    proxy: PartitionProxy,
    workdir: Path,
    common_settings: Mapping[str, Any] | None = None,
    app_root: Path = REPOSITORY_ROOT,
) -> CoherenceStage:
    """A stage whose servers reach DynamoDB through ``proxy``.

    ``app_root`` serves another checkout of the app (``git archive`` of the commit
    before a change: the "before" column), as ``make stampede --app-root`` does.
    """
    stage = Stage(proxy.endpoint_url, workdir, app_root, dict(common_settings or {}))
    return CoherenceStage(proxy, stage)


@contextmanager
def local_coherence_stage(app_root: Path = REPOSITORY_ROOT) -> Iterator[CoherenceStage]:
    """A DynamoDB Local, a proxy and a temporary folder, for one run of the script."""
    use_local_aws_credentials()
    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="ecommerce-coherence-"))
        dynamodb = stack.enter_context(DynamoDBLocal())
        proxy = stack.enter_context(PartitionProxy(dynamodb.port))
        yield coherence_stage(proxy, Path(directory), app_root=app_root)


def run_scenarios(
    stage: CoherenceStage,
    strategies: Sequence[str] = STRATEGIES,
    scenarios: Sequence[str] = SCENARIOS,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Each scenario once: partitions per strategy, one server each; plain SQL on the
    first strategy's server (the database, not the strategy, is what it tests); the
    killed writer on a server of its own (refresh-async, a slow database)."""
    outcomes: list[Outcome] = []

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        on_outcome(outcome)

    sql_changes = [change for change in SQL_CHANGES if f"sql-{change}" in scenarios]
    for index, strategy in enumerate(strategies):
        wanted = {"partition", "breaker-open"} & set(scenarios) or (index == 0 and sql_changes)
        if not wanted:
            continue
        with stage.serving(strategy) as server:
            if "partition" in scenarios:
                record(partition_during_post(server, stage.proxy))
            if "breaker-open" in scenarios:
                record(partition_during_post(server, stage.proxy, breaker_open_first=True))
            for change in sql_changes if index == 0 else ():
                record(plain_sql_change(server, change))
    if "writer-killed" in scenarios:
        with stage.serving(
            KILLED_WRITER_STRATEGY, DB_LATENCY_MS=KILLED_WRITER_DB_LATENCY_MS
        ) as server:
            record(writer_killed_after_post(server))
    if "long-outage" in scenarios:
        with serving_long_outage(stage) as server:
            record(long_outage(server, stage.proxy))
    return outcomes


TABLE_HEADER = (
    "scenario",
    "POST latency",
    "time until every GET shows the change",
    "did the old list come back",
)


def markdown_table(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| " + " | ".join(TABLE_HEADER) + " |",
        "| " + " | ".join(["---"] * len(TABLE_HEADER)) + " |",
    ]
    lines += ["| " + " | ".join(outcome.row()) + " |" for outcome in outcomes]
    return "\n".join(lines)
