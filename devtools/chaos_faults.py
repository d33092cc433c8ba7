"""A chaos run's fault points and the injector that carries out its plan.

What devtools/chaos.py starts (DynamoDB Local behind its proxy, the database, the
gunicorn instances) is a :class:`Fleet`; :class:`FaultInjector` runs a seeded plan
(devtools/chaos_schedule.py) against it, fault by fault, and records each one's window
for the checker. :class:`ChaosDatabase` is the run's database: where the writer's plain
SQL goes, and where the database faults act (a proxy in front of PostgreSQL, the write
lock on SQLite).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy
from sqlalchemy.pool import NullPool

from devtools.chaos_checker import FaultWindow
from devtools.chaos_schedule import PlannedFault
from devtools.dynamodb_local import DynamoDBLocal
from devtools.fleet import Instance
from devtools.partition import PartitionProxy
from devtools.postgresql import LocalPostgreSQL
from devtools.processes import worker_pids
from ecommerce.categories.names import name_key


class ChaosDatabase:
    """The run's database: the app's URL (through a proxy for PostgreSQL), and a direct
    SQLAlchemy engine without a pool for plain SQL (a back-office tool connects anew)."""

    def __init__(self, kind: str, app_url: str, direct_url: str, proxy: PartitionProxy | None):
        self.kind = kind
        self.app_url = app_url
        self.proxy = proxy
        self.engine = sqlalchemy.create_engine(direct_url, poolclass=NullPool)

    def insert(self, name: str) -> int:
        with self.engine.begin() as connection:
            return int(
                connection.execute(
                    sqlalchemy.text(
                        "INSERT INTO categories (name, name_key) VALUES (:name, :key) RETURNING id"
                    ),
                    {"name": name, "key": name_key(name)},
                ).scalar_one()
            )

    def delete(self, category_id: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sqlalchemy.text("DELETE FROM categories WHERE id = :id"), {"id": category_id}
            )

    def names(self, prefix: str) -> frozenset[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text("SELECT name FROM categories WHERE name LIKE :pattern"),
                {"pattern": f"{prefix}%"},
            )
            return frozenset(row[0] for row in rows)

    @contextmanager
    def fault(self, planned: PlannedFault) -> Iterator[None]:
        """The database fault for the block: a partition or a delay through the proxy
        (PostgreSQL), the write lock held by another transaction (SQLite)."""
        if planned.kind == "database-partition" and self.proxy is not None:
            with self.proxy.partitioned():
                yield
        elif planned.kind == "database-slow" and self.proxy is not None:
            with self.proxy.slowed(planned.delay):
                yield
        elif planned.kind == "database-locked" and self.kind == "sqlite":
            path = sqlalchemy.engine.make_url(self.app_url).database
            with closing(sqlite3.connect(path, isolation_level=None)) as locker:
                locker.execute("BEGIN IMMEDIATE")  # RESERVED: writers wait, readers go on
                try:
                    yield
                finally:
                    locker.execute("ROLLBACK")
        else:
            raise ValueError(f"{planned.kind} does not apply to {self.kind}")

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def chaos_database(
    kind: str, workdir: Path, postgresql: LocalPostgreSQL | None = None
) -> Iterator[ChaosDatabase]:
    """A SQLite file, or a fresh database on ``postgresql`` (or a server of the run's own)
    that the app reaches through a proxy."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'chaos.sqlite'}"
        database = ChaosDatabase(kind, url, url, None)
        try:
            yield database
        finally:
            database.dispose()
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database {kind!r}")
    with ExitStack() as stack:
        server = postgresql or stack.enter_context(LocalPostgreSQL())
        direct_url = server.create_database()
        proxy = stack.enter_context(PartitionProxy(server.port))
        app_url = sqlalchemy.engine.make_url(direct_url).set(port=proxy.port)
        database = ChaosDatabase(kind, app_url.render_as_string(False), direct_url, proxy)
        stack.callback(database.dispose)
        yield database


@dataclass
class Fleet:
    """What a run has running: the processes the faults act on."""

    dynamodb: DynamoDBLocal
    cache_proxy: PartitionProxy
    database: ChaosDatabase
    instances: tuple[Instance, ...]


class FaultInjector:
    """Carries out the plan in order; records each fault's window; heals whatever is left."""

    def __init__(
        self, fleet: Fleet, faults: list[FaultWindow], plan: Sequence[PlannedFault]
    ) -> None:
        self.fleet = fleet
        #: Each fault's window as it ends, appended from the injector's thread.
        self.faults = faults
        self.plan = plan

    def run(self, started: float, stop: threading.Event) -> None:
        for planned in self.plan:
            if stop.wait(max(0.0, started + planned.at - time.monotonic())):
                return
            begun = time.monotonic()
            detail = self.inject(planned, stop)
            self.faults.append(FaultWindow(planned.kind, begun, time.monotonic(), detail))

    def inject(self, planned: PlannedFault, stop: threading.Event) -> str:
        """Run one fault to its end; what it did, for the report."""
        fleet = self.fleet
        if planned.kind == "partition":
            with fleet.cache_proxy.partitioned():
                stop.wait(planned.seconds)
            return f"{planned.seconds:.1f} s"
        if planned.kind == "flapping":
            until = time.monotonic() + planned.seconds
            while time.monotonic() < until and not stop.is_set():
                with fleet.cache_proxy.partitioned():
                    stop.wait(planned.period)
                stop.wait(planned.period)
            return f"{planned.seconds:.1f} s, every {planned.period:.2f} s"
        if planned.kind == "dynamodb-hung":
            process = fleet.dynamodb.process
            assert process is not None
            os.kill(process.pid, signal.SIGSTOP)
            try:
                stop.wait(planned.seconds)
            finally:
                os.kill(process.pid, signal.SIGCONT)
            return f"{planned.seconds:.1f} s"
        if planned.kind == "dynamodb-restarted":
            fleet.dynamodb.restart()
            return "empty"
        if planned.kind == "worker-killed":
            instance = fleet.instances[planned.instance]
            pids = sorted(worker_pids(instance.process.pid))
            if not pids:
                return "no worker up"
            pid = pids[planned.worker % len(pids)]
            os.kill(pid, signal.SIGKILL)
            return f"{instance.name}/{pid}"
        with fleet.database.fault(planned):
            stop.wait(planned.seconds)
        return f"{planned.seconds:.1f} s" + (
            f", +{planned.delay:.2f} s a chunk" if planned.delay else ""
        )

    def heal_everything(self) -> None:
        """What a fault interrupted by a stop may have left: nothing, normally."""
        self.fleet.cache_proxy.heal()
        if self.fleet.database.proxy is not None:
            self.fleet.database.proxy.heal()
            self.fleet.database.proxy.delay_seconds = 0.0
