"""devtools/chaos_schedule.py: a seed always gives the same plan, and plans keep their limits."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from devtools.chaos import bounds_for
from devtools.chaos_checker import API, INSERT, SQL, FaultWindow, Write
from devtools.chaos_schedule import (
    CACHE_FAULTS,
    DATABASE_FAULTS_BY_DATABASE,
    DATABASES,
    DEPLOYED_BREAKER_COOLDOWN_SECONDS,
    GAP_SECONDS,
    next_write,
    plan_faults,
    plan_writes,
)


def test_a_seed_replays_its_plan_and_another_seed_differs() -> None:
    assert plan_faults(3, 120, "postgresql") == plan_faults(3, 120, "postgresql")
    assert plan_faults(3, 120, "postgresql") != plan_faults(4, 120, "postgresql")


@pytest.mark.parametrize("database", DATABASES)
def test_faults_come_one_at_a_time_and_end_before_the_run_does(database: str) -> None:
    for seed in range(50):
        plan = plan_faults(seed, 60, database)
        ends = 0.0
        for fault in plan:
            assert fault.at >= ends + GAP_SECONDS[0] - 1e-9
            ends = fault.at + fault.seconds
        assert ends <= 60
        allowed = set(CACHE_FAULTS) | set(DATABASE_FAULTS_BY_DATABASE[database])
        assert {fault.kind for fault in plan} <= allowed


@pytest.mark.parametrize("database", DATABASES)
def test_over_many_seeds_every_fault_happens_and_some_partitions_outlast_the_cool_down(
    database: str,
) -> None:
    plans = [fault for seed in range(30) for fault in plan_faults(seed, 120, database)]

    kinds = Counter(fault.kind for fault in plans)
    assert set(kinds) == set(CACHE_FAULTS) | set(DATABASE_FAULTS_BY_DATABASE[database])
    assert any(
        f.kind == "partition" and f.seconds > DEPLOYED_BREAKER_COOLDOWN_SECONDS for f in plans
    )


def test_an_unknown_database_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown database"):
        plan_faults(1, 60, "mysql")


@pytest.mark.parametrize("database", DATABASES)
def test_the_schedule_leaves_the_stale_check_seconds_not_the_whole_run(database: str) -> None:
    """A write every 0.6 s through a two-minute plan: the checker's bound on each (how long
    it may stay invisible) is a few seconds at the median, and even the longest ends well
    before the run does; gaps all shorter than the heal bound would chain to the end."""
    bounds = bounds_for(database)
    for seed in range(1, 7):
        faults = [
            FaultWindow(fault.kind, fault.at, fault.at + fault.seconds)
            for fault in plan_faults(seed, 120, database)
        ]
        allowed = []
        for step in range(190):
            sent = 1.0 + step * 0.6
            for kind in (f"{API}-{INSERT}", f"{SQL}-{INSERT}"):
                write = Write(kind, "name", sent, sent + 0.05, acknowledged=True)
                deadline = bounds.deadline(write, faults)
                assert deadline is not None
                allowed.append(deadline - write.answered)
        assert statistics.median(allowed) < 10, seed
        assert max(allowed) < 45, seed


def test_writes_keep_to_the_kinds_asked_for() -> None:
    both = plan_writes(1)
    kinds = {next_write(both).kind for _ in range(200)}
    sql_inserts = plan_writes(1)

    assert kinds == {"api-insert", "api-delete", "sql-insert", "sql-delete"}
    assert {next_write(sql_inserts, ("sql-insert",)).kind for _ in range(50)} == {"sql-insert"}
