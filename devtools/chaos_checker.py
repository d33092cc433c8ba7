"""The chaos run's checker: what a history of reads, writes and faults may not contain.

Pure functions over plain records, so most of the checker is proven on synthetic
histories (tests/unit/test_chaos_checker.py) without a process; devtools/chaos.py
records the history against the real fleet and hands it here.

The history. Every category the run creates has a name of its own, inserted once
(through the API or with plain SQL) and maybe deleted once later, so the state of
each name is a line: absent, present, absent again. A read is one ``GET /categories``
on one worker (a pid, pinned), with the names it listed. Times are the harness's
``time.monotonic()``: a write's ``sent`` and ``answered``, a read's likewise.

The checks, each a promise of the README (the bounds below say which):

- **stale**: a read sent later than a write's deadline (:meth:`Bounds.deadline`) shows
  the write: an insert's name listed, a delete's name gone. Unless the name's next
  operation (its delete) was already sent when the read was answered.
- **went back**: one worker listed a name and later did not (its delete not yet sent),
  or stopped listing a deleted name and later listed it again. The region never serves
  a value older than one it has already shown (README, "Coherence").
- **phantom**: a read lists a run's name whose insert had not been sent.
- **5xx**: an answer >= 500 while the app's path to the database is up (README: a
  database down or too slow is a 503; anything else is the app's own error). Allowed
  while a database fault (:data:`DATABASE_FAULTS`) overlaps the request.
- **lost**: at the end the database lacks an acknowledged insert (not deleted since), or
  still holds an acknowledged delete.
- **not converged**: at the end a worker's last read does not list exactly the run's
  names the database holds, or a worker gave no last read.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

API = "api"
SQL = "sql"
INSERT = "insert"
DELETE = "delete"
WRITE_KINDS = tuple(f"{path}-{operation}" for path in (API, SQL) for operation in (INSERT, DELETE))

#: Faults between the app and DynamoDB: they may open circuits, which stay open for the
#: breaker's cool-down after the heal.
CACHE_FAULTS = frozenset({"partition", "flapping", "dynamodb-hung", "dynamodb-restarted"})
#: Faults on the app's path to its database: 5xx answers are allowed while they last.
DATABASE_FAULTS = frozenset({"database-partition", "database-slow", "database-locked"})
#: Faults a repair goes through (the cache's and the database's): one that begins before a
#: write's deadline moves the deadline to its own heal bound.
REPAIR_FAULTS = CACHE_FAULTS | DATABASE_FAULTS
#: A worker SIGKILLed: whatever lease it held runs out before another process repairs.
WORKER_KILLED = "worker-killed"
#: A request answered just after a database fault ends may still have met it (a pooled
#: connection the fault broke, replaced by pool_pre_ping on the next checkout).
DATABASE_RECOVERY_GRACE_SECONDS = 0.5


@dataclass(frozen=True)
class Write:
    """One write: ``kind`` is one of WRITE_KINDS; ``acknowledged``: 2xx, or the SQL commit
    returned. An unacknowledged write may or may not have happened."""

    kind: str
    name: str
    sent: float
    answered: float | None
    acknowledged: bool
    status: int | None = None
    request_id: str | None = None

    @property
    def inserts(self) -> bool:
        return self.kind.endswith(INSERT)

    @property
    def path(self) -> str:
        return self.kind.split("-", 1)[0]


@dataclass(frozen=True)
class Read:
    """One GET /categories on one worker; ``names`` is None unless it answered 200."""

    worker: str
    sent: float
    answered: float
    status: int | None
    cache: str
    names: frozenset[str] | None
    request_id: str

    @property
    def listed(self) -> bool:
        return self.status == 200 and self.names is not None


@dataclass(frozen=True)
class FaultWindow:
    """A fault from its start to its heal (an instant one, a SIGKILL: start == end)."""

    kind: str
    start: float
    end: float
    detail: str = ""

    def overlaps(self, start: float, end: float, grace: float = 0.0) -> bool:
        return self.start <= end and start <= self.end + grace


@dataclass(frozen=True)
class Bounds:
    """How late a write may become visible to every read, in seconds, and why.

    ``near_ttl``: README, "The hot path": every other process and instance sees a
    write within ``CACHE_NEAR_TTL`` (deploy/cloudformation.yaml's NearCacheTtl: 1).
    ``reconcile``: README and ecommerce/config.py (``CATEGORIES_CACHE_RECONCILE_SECONDS``,
    2): "the bound on how long any failure leaves an older list served"; on SQLite
    (no notifications) "the reconciler's interval is the bound" for plain SQL.
    ``heal``: devtools/coherence.py's HEALED_BOUND_SECONDS (3): every GET shows a change
    within 3 s of the heal (tests/blackbox/test_coherence.py holds the scripted faults
    to it). ``slack``: the harness's own, not a promise: a 2-core machine shared by the
    four workers, DynamoDB Local's JVM, PostgreSQL and this harness, where a read's own
    time and scheduling cost up to about a second.
    ``notifications``: PostgreSQL's change listener (README, "On PostgreSQL, events, not
    polling"): plain SQL is served everywhere "within tens of milliseconds instead of
    CACHE_NEAR_TTL", so its bound is the API's.
    ``cooldown``: ``CACHE_DYNAMODB_BREAKER_COOLDOWN`` (10 s, the deploy's): a circuit a
    cache fault opened stays open this long after the heal, and meanwhile each process
    serves the copy it holds "while the database's version, read once per reconcile
    interval, has not moved past it" (README, the hung DynamoDB): the reconcile bound.
    ``lease``: ``CATEGORIES_CACHE_LEASE_SECONDS`` (5): a worker killed while it holds the
    load's lease (a refresh-async refresh, a repair) frees it only by expiry, and readers
    serve the stale mark until the next one loads (docs/explanation/coherence.md measures
    6.15 s for a writer killed after its POST).
    """

    near_ttl: float
    reconcile: float
    heal: float
    slack: float
    notifications: bool
    cooldown: float
    lease: float

    def quiet(self, kind: str) -> float:
        """The bound with no fault around: a near copy's life, plus a reconcile for plain
        SQL without notifications (the repair, then the near copies read before it)."""
        if kind.startswith(SQL) and not self.notifications:
            return self.reconcile + self.near_ttl + self.slack
        return self.near_ttl + self.slack

    def around_faults(self) -> float:
        """After the ack, with a fault around it: any failure is repaired within a
        reconcile interval, and near copies read before the repair end within their TTL."""
        return self.reconcile + self.near_ttl + self.slack

    def deadline(self, write: Write, faults: Sequence[FaultWindow]) -> float | None:
        """The time from which every read sent must show ``write``; None if unacknowledged.

        A fault overlapping the write or its quiet bound (a cache fault: or the cool-down
        after it) moves the deadline to the later of the reconcile bound from the ack and
        the heal bound from the fault's end. Then any fault that begins before the
        deadline moves it to its own heal bound, and so on: every repair goes through the
        database (a load, the version a held copy is checked against) and through the
        cache (the reconciler's tombstone, stale mark or store), and none of the
        documented bounds holds while either is cut off, hung or slowed; a killed worker
        repairs nothing and delays nothing.
        """
        if not write.acknowledged or write.answered is None:
            return None
        quiet = write.answered + self.quiet(write.kind)
        overlapping = [
            fault
            for fault in faults
            if fault.overlaps(
                write.sent, quiet, self.cooldown if fault.kind in CACHE_FAULTS else 0.0
            )
        ]
        deadline = quiet
        if overlapping:
            healed = max(fault.end for fault in overlapping)
            deadline = max(quiet, write.answered + self.around_faults(), healed + self.heal)
        for fault in sorted(faults, key=lambda fault: fault.start):
            if fault.kind in REPAIR_FAULTS and fault.overlaps(write.sent, deadline):
                deadline = max(deadline, fault.end + self.heal)
            elif fault.kind == WORKER_KILLED and fault.overlaps(write.sent, deadline):
                deadline = max(deadline, fault.end + self.lease + self.near_ttl + self.slack)
        return deadline


@dataclass(frozen=True)
class Violation:
    kind: str
    message: str
    read: Read | None = None
    write: Write | None = None


@dataclass(frozen=True)
class NameHistory:
    """A name's insert and (maybe) delete."""

    insert: Write | None
    delete: Write | None

    def delete_sent_before(self, moment: float) -> bool:
        return self.delete is not None and self.delete.sent <= moment


@dataclass
class Report:
    """What the checker found, and what the table says about a run."""

    violations: list[Violation] = field(default_factory=list)
    reads_checked: int = 0
    #: Per write kind: the worst lag (ack to the last read sent that did not show it yet).
    worst_lag: dict[str, float] = field(default_factory=dict)
    acknowledged: dict[str, int] = field(default_factory=dict)
    #: The longest a GET took while the database was not faulted, answered or not:
    #: measured, not held to a bound (speed is for benchmarks), but a GET that a cache
    #: fault held up shows here (the README: a hung DynamoDB costs a GET one timeout).
    slowest: Read | None = None
    #: Per acknowledged write, how long after its acknowledgement the checker allowed it to
    #: stay invisible (its deadline): how strict the run's stale check was. Faults move
    #: deadlines (:meth:`Bounds.deadline`); a run whose faults moved every one far out
    #: would check little, and these say so.
    allowed: list[float] = field(default_factory=list)

    @property
    def slowest_read(self) -> float:
        return self.slowest.answered - self.slowest.sent if self.slowest else 0.0

    @property
    def allowed_median(self) -> float:
        return statistics.median(self.allowed) if self.allowed else 0.0

    @property
    def allowed_longest(self) -> float:
        return max(self.allowed, default=0.0)


def name_histories(writes: Iterable[Write]) -> dict[str, NameHistory]:
    inserts: dict[str, Write] = {}
    deletes: dict[str, Write] = {}
    for write in writes:
        (inserts if write.inserts else deletes)[write.name] = write
    return {
        name: NameHistory(inserts.get(name), deletes.get(name))
        for name in inserts.keys() | deletes.keys()
    }


def shows(read: Read, write: Write) -> bool:
    """Does ``read`` (a listed one) show ``write``'s effect?"""
    assert read.names is not None
    return (write.name in read.names) == write.inserts


def stale_reads(
    reads: Sequence[Read],
    histories: Mapping[str, NameHistory],
    bounds: Bounds,
    faults: Sequence[FaultWindow],
) -> tuple[list[Violation], dict[str, float]]:
    """Reads past a write's deadline that do not show it; and each kind's worst lag."""
    violations: list[Violation] = []
    worst_lag: dict[str, float] = {}
    listed = [read for read in reads if read.listed]
    for history in histories.values():
        for write in (history.insert, history.delete):
            if write is None or not write.acknowledged or write.answered is None:
                continue
            deadline = bounds.deadline(write, faults)
            assert deadline is not None
            lag = 0.0
            for read in listed:
                if read.sent < write.answered or shows(read, write):
                    continue
                if write.inserts and history.delete_sent_before(read.answered):
                    continue  # the delete may have landed: absence is no longer stale
                lag = max(lag, read.sent - write.answered)
                if read.sent >= deadline:
                    violations.append(
                        Violation(
                            "stale",
                            f"{read.worker} {read.cache} sent {read.sent - write.answered:.2f} s "
                            f"after the {write.kind} of {write.name!r} was acknowledged "
                            f"(bound {deadline - write.answered:.2f} s) and does not show it",
                            read,
                            write,
                        )
                    )
            worst_lag[write.kind] = max(worst_lag.get(write.kind, 0.0), lag)
    return violations, worst_lag


def reads_that_went_back(
    reads: Sequence[Read], histories: Mapping[str, NameHistory]
) -> list[Violation]:
    """Per worker and name: present, then absent before its delete was sent; or absent
    after being present with the delete sent, then present again."""
    violations = []
    by_worker: dict[str, list[Read]] = defaultdict(list)
    for read in reads:
        if read.listed:
            by_worker[read.worker].append(read)
    for worker_reads in by_worker.values():
        worker_reads.sort(key=lambda read: read.sent)
        for name, history in histories.items():
            seen_present: Read | None = None
            seen_deleted: Read | None = None
            for read in worker_reads:
                assert read.names is not None
                if name in read.names:
                    if seen_deleted is not None:
                        violations.append(
                            _went_back(read, name, "listed again after", seen_deleted)
                        )
                        break
                    seen_present = read
                elif seen_present is not None:
                    if not history.delete_sent_before(read.answered):
                        violations.append(_went_back(read, name, "missing after", seen_present))
                        break
                    seen_deleted = read
    return violations


def _went_back(read: Read, name: str, what: str, earlier: Read) -> Violation:
    return Violation(
        "went back",
        f"{read.worker} {read.cache} {name!r} {what} its read {earlier.request_id} "
        f"({read.sent - earlier.sent:.2f} s before)",
        read,
    )


def phantoms(
    reads: Sequence[Read], histories: Mapping[str, NameHistory], prefix: str
) -> list[Violation]:
    """Reads listing a run's name (``prefix``) before its insert was sent, or never sent."""
    violations = []
    for read in reads:
        if not read.listed:
            continue
        assert read.names is not None
        for name in read.names:
            if not name.startswith(prefix):
                continue
            insert = histories.get(name, NameHistory(None, None)).insert
            if insert is None or insert.sent > read.answered:
                violations.append(
                    Violation("phantom", f"{read.worker} listed {name!r} before its insert", read)
                )
    return violations


def during_database_fault(sent: float, answered: float, faults: Sequence[FaultWindow]) -> bool:
    """Did a database fault (or its grace after the heal) overlap this request?"""
    return any(
        fault.overlaps(sent, answered, DATABASE_RECOVERY_GRACE_SECONDS)
        for fault in faults
        if fault.kind in DATABASE_FAULTS
    )


def server_errors(
    reads: Sequence[Read], writes: Sequence[Write], faults: Sequence[FaultWindow]
) -> list[Violation]:
    """5xx answers outside every database fault (and its grace)."""

    def server_error(status: int | None, sent: float, answered: float | None) -> bool:
        if status is None or status < 500 or answered is None:
            return False
        return not during_database_fault(sent, answered, faults)

    return [
        *(
            Violation("5xx", f"{read.worker} answered {read.status} to a GET", read)
            for read in reads
            if server_error(read.status, read.sent, read.answered)
        ),
        *(
            Violation("5xx", f"the {write.kind} of {write.name!r}: {write.status}", write=write)
            for write in writes
            if server_error(write.status, write.sent, write.answered)
        ),
    ]


def lost_writes(
    histories: Mapping[str, NameHistory], final_rows: frozenset[str]
) -> list[Violation]:
    """The database at the end against every acknowledged write."""
    violations = []
    for name, history in histories.items():
        insert, delete = history.insert, history.delete
        if insert is not None and insert.acknowledged and delete is None and name not in final_rows:
            violations.append(
                Violation(
                    "lost",
                    f"{name!r}: acknowledged, never deleted, not in the database",
                    write=insert,
                )
            )
        if delete is not None and delete.acknowledged and name in final_rows:
            violations.append(
                Violation(
                    "lost", f"{name!r}: deleted (acknowledged), still in the database", write=delete
                )
            )
    return violations


def unconverged(
    final_reads: Mapping[str, Read | None], final_rows: frozenset[str], prefix: str
) -> list[Violation]:
    """Each worker's last read against the database's rows (the run's names only)."""
    violations = []
    for worker, read in sorted(final_reads.items()):
        if read is None or not read.listed:
            status = "no answer" if read is None else f"status {read.status}"
            violations.append(Violation("not converged", f"{worker}: {status} at the end", read))
            continue
        assert read.names is not None
        listed = frozenset(name for name in read.names if name.startswith(prefix))
        if listed != final_rows:
            missing, extra = sorted(final_rows - listed), sorted(listed - final_rows)
            violations.append(
                Violation(
                    "not converged",
                    f"{worker} {read.cache} at the end: missing {missing}, extra {extra}",
                    read,
                )
            )
    return violations


def check(
    *,
    writes: Sequence[Write],
    reads: Sequence[Read],
    faults: Sequence[FaultWindow],
    bounds: Bounds,
    final_reads: Mapping[str, Read | None],
    final_rows: frozenset[str],
    prefix: str,
) -> Report:
    """Every check over one run's history; ``final_rows``: the run's names in the database."""
    histories = name_histories(writes)
    stale, worst_lag = stale_reads(reads, histories, bounds, faults)
    violations = [
        *stale,
        *reads_that_went_back(reads, histories),
        *phantoms(reads, histories, prefix),
        *server_errors(reads, writes, faults),
        *lost_writes(histories, final_rows),
        *unconverged(final_reads, final_rows, prefix),
    ]
    acknowledged: dict[str, int] = defaultdict(int)
    allowed: list[float] = []
    for write in writes:
        deadline = bounds.deadline(write, faults)
        if deadline is not None and write.answered is not None:
            acknowledged[write.kind] += 1
            allowed.append(deadline - write.answered)
    return Report(
        allowed=allowed,
        violations=violations,
        reads_checked=sum(1 for read in reads if read.listed),
        worst_lag=worst_lag,
        acknowledged=dict(acknowledged),
        slowest=max(
            (read for read in reads if not during_database_fault(read.sent, read.answered, faults)),
            key=lambda read: read.answered - read.sent,
            default=None,
        ),
    )
