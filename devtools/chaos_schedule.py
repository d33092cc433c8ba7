"""A chaos run's seeded schedule: which fault, when, for how long, and what the writer does.

Pure: the same seed, length and database give the same plan on every machine
(``random.Random(seed)``), so a violation's seed replays its faults; the
harness (devtools/chaos.py) carries the plan out against real processes.
tests/unit/test_chaos_schedule.py holds the plans to their limits.

Faults, one at a time with quiet gaps between (so each violation points at one, and so a
write's stale bound ends: see GAP_SECONDS):

    partition            the proxy in front of DynamoDB Local drops everything, both ways;
                         a quarter are longer than the deployed 10 s breaker cool-down
    flapping             partitioned and healed in turns every 0.2-0.6 s
    dynamodb-hung        DynamoDB Local stopped (SIGSTOP), then resumed (SIGCONT)
    dynamodb-restarted   DynamoDB Local restarted on its port: every table gone
    worker-killed        SIGKILL to one worker of one instance (gunicorn forks another)
    database-partition   PostgreSQL: the proxy in front of it drops everything
    database-slow        PostgreSQL: the proxy delays every chunk; SQLite: database-locked
    database-locked      SQLite: a transaction holds the write lock (writes wait)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cache_backends.dynamodb.settings import DEFAULT_BREAKER_COOLDOWN
from devtools.chaos_checker import API, DELETE, INSERT, SQL, WRITE_KINDS

CACHE_FAULTS = ("partition", "flapping", "dynamodb-hung", "dynamodb-restarted", "worker-killed")
DATABASE_FAULTS_BY_DATABASE = {
    "sqlite": ("database-locked",),
    "postgresql": ("database-partition", "database-slow"),
}
DATABASES = tuple(DATABASE_FAULTS_BY_DATABASE)
#: deploy/cloudformation.yaml leaves CACHE_DYNAMODB_BREAKER_COOLDOWN at its default, 10 s:
#: a long partition outlasts it, so circuits open, probe and open again while writes are owed.
DEPLOYED_BREAKER_COOLDOWN_SECONDS = DEFAULT_BREAKER_COOLDOWN
LONG_PARTITION_SHARE = 0.25
#: Quiet between faults: time for the reads to show what the last fault left behind. The
#: checker lets a write stay invisible until 3 s (its heal bound) after the last fault that
#: began before that bound (devtools/chaos_checker.py, Bounds.deadline): gaps all shorter
#: than the heal bound chain every write's bound to the run's end and leave the stale check
#: holding nothing. Most of these are longer, so a bound ends a few seconds after the
#: fault around its write; a sixth are shorter, so repairs cut by the next fault still run.
GAP_SECONDS = (2.0, 8.0)
#: Writes are spaced so that a run's reads see each one alone for a moment.
WRITE_INTERVAL_SECONDS = (0.3, 0.9)
#: The share of writes that delete a category the run created (when one is left).
DELETE_SHARE = 0.35
SQL_SHARE = 0.4
#: Deletes leave this many of the run's names listed: an insert then lives a few writes
#: (seconds), long enough for the reads to have to show it.
MIN_LIVE_NAMES = 3


@dataclass(frozen=True)
class PlannedFault:
    kind: str
    #: Seconds after the run's start.
    at: float
    #: How long it lasts (0 for a SIGKILL; a restart lasts as long as DynamoDB Local takes).
    seconds: float
    #: Which instance (0, 1) and worker (0, 1) a kill picks; the slow database's delay.
    instance: int = 0
    worker: int = 0
    delay: float = 0.0
    #: Flapping: how long each partition and each healed spell lasts.
    period: float = 0.0


def fault_duration(kind: str, rng: random.Random) -> PlannedFault:
    """A fault of ``kind`` at time 0: its length and parameters."""
    if kind == "partition":
        long = rng.random() < LONG_PARTITION_SHARE
        seconds = (
            rng.uniform(
                DEPLOYED_BREAKER_COOLDOWN_SECONDS + 1, DEPLOYED_BREAKER_COOLDOWN_SECONDS + 3
            )
            if long
            else rng.uniform(0.5, 2.5)
        )
        return PlannedFault(kind, 0.0, seconds)
    if kind == "flapping":
        return PlannedFault(kind, 0.0, rng.uniform(3.0, 6.0), period=rng.uniform(0.2, 0.6))
    if kind == "dynamodb-hung":
        return PlannedFault(kind, 0.0, rng.uniform(1.0, 4.0))
    if kind in ("dynamodb-restarted", "worker-killed"):
        return PlannedFault(kind, 0.0, 0.0, instance=rng.randrange(2), worker=rng.randrange(2))
    if kind == "database-partition":
        return PlannedFault(kind, 0.0, rng.uniform(0.5, 3.0))
    if kind == "database-slow":
        return PlannedFault(kind, 0.0, rng.uniform(2.0, 5.0), delay=rng.uniform(0.1, 0.4))
    if kind == "database-locked":
        return PlannedFault(kind, 0.0, rng.uniform(0.5, 3.0))
    raise ValueError(f"unknown fault {kind!r}")


def plan_faults(seed: int, seconds: float, database: str) -> list[PlannedFault]:
    """Faults from the kinds this database has, in order, each ending before ``seconds``."""
    if database not in DATABASE_FAULTS_BY_DATABASE:
        raise ValueError(f"unknown database {database!r}; choose from {list(DATABASES)}")
    rng = random.Random(f"faults-{seed}")
    kinds = CACHE_FAULTS + DATABASE_FAULTS_BY_DATABASE[database]
    plan: list[PlannedFault] = []
    moment = rng.uniform(*GAP_SECONDS)
    while True:
        fault = fault_duration(rng.choice(kinds), rng)
        if moment + fault.seconds > seconds:
            return plan
        plan.append(
            PlannedFault(
                fault.kind,
                moment,
                fault.seconds,
                fault.instance,
                fault.worker,
                fault.delay,
                fault.period,
            )
        )
        moment += fault.seconds + rng.uniform(*GAP_SECONDS)


@dataclass(frozen=True)
class PlannedWrite:
    """The writer's next move: ``kind`` one of WRITE_KINDS (a delete picks the oldest
    name the run created and has not deleted, when more than MIN_LIVE_NAMES are left; else
    it inserts instead), then a pause."""

    kind: str
    pause: float


def plan_writes(seed: int) -> random.Random:
    """The writer's own stream (separate from the faults': adding a fault kind does not
    change which writes a seed makes)."""
    return random.Random(f"writes-{seed}")


def next_write(rng: random.Random, kinds: tuple[str, ...] = WRITE_KINDS) -> PlannedWrite:
    """The next write, one of ``kinds`` (all four by default; a planted fault's run may
    keep to plain-SQL inserts, which only the reconciler brings to the cache on SQLite)."""
    path = SQL if rng.random() < SQL_SHARE else API
    operation = DELETE if rng.random() < DELETE_SHARE else INSERT
    kind = f"{path}-{operation}"
    return PlannedWrite(kind if kind in kinds else kinds[0], rng.uniform(*WRITE_INTERVAL_SECONDS))
