"""devtools/chaos_checker.py on synthetic histories: each check finds what it must, and
nothing else, without a process. The black-box runs (tests/blackbox/test_chaos.py)
then only have to show the recording is faithful and the planted faults are caught.

Times are seconds; the bounds below are the deployed ones (1 s near-cache, 2 s
reconcile, 3 s heal) with 1 s of slack: quiet API bound 2 s, plain SQL on SQLite 4 s.
"""

from __future__ import annotations

import pytest

from devtools.chaos_checker import (
    Bounds,
    FaultWindow,
    Read,
    Write,
    check,
    lost_writes,
    name_histories,
    phantoms,
    reads_that_went_back,
    server_errors,
    stale_reads,
    unconverged,
)

PREFIX = "Chaos1N"
SQLITE = Bounds(
    near_ttl=1.0, reconcile=2.0, heal=3.0, slack=1.0, notifications=False, cooldown=10.0, lease=5.0
)
POSTGRESQL = Bounds(
    near_ttl=1.0, reconcile=2.0, heal=3.0, slack=1.0, notifications=True, cooldown=10.0, lease=5.0
)


def write(kind: str, name: str, sent: float, acknowledged: bool = True, status: int = 201) -> Write:
    return Write(kind, name, sent, sent + 0.1, acknowledged, status, f"w-{name}-{kind}")


def read(worker: str, sent: float, *names: str, status: int = 200, cache: str = "HIT") -> Read:
    listed = frozenset(names) if status == 200 else None
    return Read(worker, sent, sent + 0.01, status, cache, listed, f"r-{worker}-{sent}")


A, B = f"{PREFIX}1", f"{PREFIX}2"


def stale(writes: list[Write], reads: list[Read], bounds: Bounds = SQLITE, faults=()) -> list:
    violations, _ = stale_reads(reads, name_histories(writes), bounds, list(faults))
    return violations


class TestStaleReads:
    def test_an_insert_missing_past_its_bound_is_stale_and_within_it_is_not(self) -> None:
        insert = write("api-insert", A, 10.0)  # acknowledged at 10.1: bound 12.1
        within = read("a/1", 12.0)
        past = read("a/1", 12.2)

        assert stale([insert], [within]) == []
        [violation] = stale([insert], [within, past])
        assert violation.kind == "stale"
        assert violation.read == past and violation.write == insert

    def test_a_delete_still_listed_past_its_bound_is_stale(self) -> None:
        writes = [write("api-insert", A, 1.0), write("api-delete", A, 10.0, status=204)]

        [violation] = stale(writes, [read("b/2", 12.5, A)])

        assert violation.write == writes[1]

    def test_absence_after_the_delete_was_sent_is_not_a_stale_insert(self) -> None:
        writes = [write("api-insert", A, 1.0), write("sql-delete", A, 9.0, acknowledged=False)]

        assert stale(writes, [read("a/1", 12.0)]) == []

    def test_plain_sql_on_sqlite_has_the_reconcilers_bound_and_on_postgresql_the_apis(
        self,
    ) -> None:
        insert = write("sql-insert", A, 10.0)
        at_three_seconds = read("a/1", 13.1)

        assert stale([insert], [at_three_seconds], SQLITE) == []  # bound 4 s: 2 + 1 + 1
        assert len(stale([insert], [at_three_seconds], POSTGRESQL)) == 1  # bound 2 s

    def test_a_fault_around_the_write_moves_the_deadline_to_the_heal_bound(self) -> None:
        insert = write("api-insert", A, 10.0)
        partition = FaultWindow("partition", 9.0, 15.0)  # healed at 15: deadline 18

        assert stale([insert], [read("a/1", 17.9)], faults=[partition]) == []
        assert len(stale([insert], [read("a/1", 18.1)], faults=[partition])) == 1

    def test_within_the_cool_down_after_a_cache_fault_the_reconcile_bound_applies(self) -> None:
        """The circuit may still be open: held copies are checked every reconcile interval."""
        insert = write("api-insert", A, 10.0)  # acknowledged at 10.1: deadline 14.1
        partition = FaultWindow("partition", 1.0, 5.0)  # healed 5 s before: circuits open

        assert stale([insert], [read("a/1", 14.0)], faults=[partition]) == []
        assert len(stale([insert], [read("a/1", 14.2)], faults=[partition])) == 1

    def test_a_database_fault_begun_before_the_deadline_moves_it_past_its_heal(self) -> None:
        """Every repair reads the database: a slow one delays it, and one after it more."""
        insert = write("api-insert", A, 10.0)  # quiet deadline 12.1
        slow = FaultWindow("database-slow", 12.0, 14.0)  # deadline 17
        partition = FaultWindow("database-partition", 16.0, 17.5)  # deadline 20.5
        later = FaultWindow("database-partition", 21.0, 25.0)  # after it: no effect

        faults = [slow, partition, later]
        assert stale([insert], [read("a/1", 20.4)], faults=faults) == []
        assert len(stale([insert], [read("a/1", 20.6)], faults=faults)) == 1

    def test_a_cache_fault_begun_before_the_deadline_moves_it_past_its_heal(self) -> None:
        """The repair stores through the cache: DynamoDB hung before it lands delays it."""
        delete = write("sql-delete", A, 10.0)  # PostgreSQL, a database fault: deadline 14.1
        partition = FaultWindow("database-partition", 8.0, 10.5)
        hung = FaultWindow("dynamodb-hung", 13.5, 14.8)  # deadline 17.8

        faults = [partition, hung]
        assert stale([delete], [read("a/1", 17.7, A)], POSTGRESQL, faults) == []
        assert len(stale([delete], [read("a/1", 17.9, A)], POSTGRESQL, faults)) == 1

    def test_a_worker_killed_before_the_deadline_adds_its_lease(self) -> None:
        """It may have held the refresh's lease: readers serve the stale mark until it expires."""
        delete = write("sql-delete", A, 10.0)  # PostgreSQL, quiet: deadline 12.1
        killed = FaultWindow("worker-killed", 11.0, 11.0)  # deadline 11 + 5 + 1 + 1 = 18

        assert stale([delete], [read("a/1", 17.9, A)], POSTGRESQL, [killed]) == []
        assert len(stale([delete], [read("a/1", 18.1, A)], POSTGRESQL, [killed])) == 1

    def test_a_fault_over_before_the_write_and_its_cool_down_changes_nothing(self) -> None:
        insert = write("api-insert", A, 20.0)
        partition = FaultWindow("partition", 1.0, 5.0)
        database = FaultWindow("database-partition", 17.0, 19.0)

        assert len(stale([insert], [read("a/1", 22.2)], faults=[partition, database])) == 1

    def test_an_unacknowledged_write_has_no_deadline(self) -> None:
        insert = write("api-insert", A, 10.0, acknowledged=False, status=503)

        assert stale([insert], [read("a/1", 30.0)]) == []

    def test_the_worst_lag_is_from_the_ack_to_the_last_read_without_it(self) -> None:
        insert = write("api-insert", A, 10.0)
        reads = [read("a/1", 10.5), read("b/1", 11.0), read("a/1", 11.2, A), read("b/1", 11.4, A)]

        violations, worst = stale_reads(reads, name_histories([insert]), SQLITE, [])

        assert violations == []
        assert worst == {"api-insert": pytest.approx(0.9)}

    def test_failed_reads_are_not_checked(self) -> None:
        insert = write("api-insert", A, 10.0)

        assert stale([insert], [read("a/1", 20.0, status=503)]) == []


class TestWentBack:
    def test_a_worker_that_listed_a_name_and_then_did_not_went_back(self) -> None:
        writes = [write("api-insert", A, 1.0)]
        reads = [read("a/1", 2.0, A), read("a/1", 2.5)]

        [violation] = reads_that_went_back(reads, name_histories(writes))

        assert violation.kind == "went back" and violation.read == reads[1]

    def test_two_workers_out_of_step_is_not_going_back(self) -> None:
        writes = [write("api-insert", A, 1.0)]
        reads = [read("a/1", 2.0, A), read("b/1", 2.5)]

        assert reads_that_went_back(reads, name_histories(writes)) == []

    def test_absence_once_the_delete_was_sent_is_not_going_back(self) -> None:
        writes = [write("api-insert", A, 1.0), write("api-delete", A, 3.0)]
        reads = [read("a/1", 2.0, A), read("a/1", 3.5)]

        assert reads_that_went_back(reads, name_histories(writes)) == []

    def test_a_deleted_name_listed_again_went_back(self) -> None:
        writes = [write("api-insert", A, 1.0), write("api-delete", A, 3.0)]
        reads = [read("a/1", 2.0, A), read("a/1", 3.5), read("a/1", 3.7, A)]

        [violation] = reads_that_went_back(reads, name_histories(writes))

        assert violation.read == reads[2]


class TestPhantoms:
    def test_a_name_listed_before_its_insert_was_sent(self) -> None:
        writes = [write("api-insert", A, 5.0)]
        reads = [read("a/1", 1.0, A), read("a/1", 1.0, B), read("a/1", 6.0, A, "Seeded")]

        violations = phantoms(reads, name_histories(writes), PREFIX)

        assert [v.read for v in violations] == reads[:2]


class TestServerErrors:
    def test_a_5xx_is_allowed_only_while_the_database_is_faulted(self) -> None:
        database = FaultWindow("database-partition", 10.0, 12.0)
        cache = FaultWindow("partition", 20.0, 22.0)
        reads = [
            read("a/1", 11.0, status=503),  # during
            read("a/1", 12.3, status=503),  # within the grace after the heal
            read("a/1", 21.0, status=503),  # a cache fault excuses nothing
            read("a/1", 30.0, status=500),
        ]
        writes = [write("api-insert", A, 21.0, acknowledged=False, status=500)]

        violations = server_errors(reads, writes, [database, cache])

        assert [v.read for v in violations if v.read] == reads[2:]
        assert [v.write for v in violations if v.write] == writes


class TestEnd:
    def test_an_acknowledged_insert_missing_from_the_database_is_lost(self) -> None:
        histories = name_histories(
            [
                write("api-insert", A, 1.0),
                write("api-insert", B, 1.0),
                write("sql-delete", B, 2.0),
                write("api-insert", f"{PREFIX}3", 1.0, acknowledged=False),
            ]
        )

        violations = lost_writes(histories, frozenset({B}))

        assert sorted(v.write.name for v in violations) == [A, B]

    def test_every_worker_must_end_on_the_databases_rows(self) -> None:
        final = {
            "a/1": read("a/1", 50.0, A, "Seeded"),
            "a/2": read("a/2", 50.0),
            "b/1": None,
        }

        violations = unconverged(final, frozenset({A}), PREFIX)

        assert [v.message.split()[0] for v in violations] == ["a/2", "b/1:"]


def test_a_clean_history_has_no_violation_and_counts_what_was_checked() -> None:
    writes = [write("api-insert", A, 1.0), write("sql-insert", B, 2.0), write("api-delete", A, 3.0)]
    reads = [
        read("a/1", 1.5, A),
        read("b/1", 2.5, A, B),
        read("a/1", 3.5, B),
        read("b/1", 9.0, B),
        read("a/1", 9.0, status=None),
    ]

    report = check(
        writes=writes,
        reads=reads,
        faults=[],
        bounds=SQLITE,
        final_reads={"a/1": reads[2], "b/1": reads[3]},
        final_rows=frozenset({B}),
        prefix=PREFIX,
    )

    assert report.violations == []
    assert report.reads_checked == 4
    assert report.acknowledged == {"api-insert": 1, "sql-insert": 1, "api-delete": 1}
    assert set(report.worst_lag) == {"api-insert", "sql-insert", "api-delete"}
    assert report.slowest_read == pytest.approx(0.01)
    # No fault: the API writes at the quiet bound (2 s), plain SQL on SQLite at 4 s.
    assert sorted(report.allowed) == pytest.approx([2.0, 2.0, 4.0])
    assert (report.allowed_median, report.allowed_longest) == pytest.approx((2.0, 4.0))


def test_the_report_says_how_far_faults_moved_the_bounds() -> None:
    """A partition over one write moves its deadline to 3 s after the heal: the table shows
    it, so a run whose faults moved every deadline far out is seen to check little."""
    quiet, caught = write("api-insert", A, 0.0), write("api-insert", B, 30.0)
    partition = FaultWindow("partition", 29.0, 40.0)

    report = check(
        writes=[quiet, caught],
        reads=[],
        faults=[partition],
        bounds=SQLITE,
        final_reads={},
        final_rows=frozenset({A, B}),
        prefix=PREFIX,
    )

    assert report.allowed == pytest.approx([2.0, 40.0 + 3.0 - 30.1])
    assert report.allowed_longest == pytest.approx(12.9)


def test_the_slowest_get_leaves_out_those_a_database_fault_held_up() -> None:
    held_up = Read("a/1", 10.0, 16.0, 503, "-", None, "r-held-up")
    slow = Read("a/1", 20.0, 20.8, 200, "MISS", frozenset(), "r-slow")

    report = check(
        writes=[],
        reads=[held_up, slow],
        faults=[FaultWindow("database-partition", 11.0, 15.0)],
        bounds=SQLITE,
        final_reads={},
        final_rows=frozenset(),
        prefix=PREFIX,
    )

    assert report.slowest_read == pytest.approx(0.8)
    assert report.violations == []
