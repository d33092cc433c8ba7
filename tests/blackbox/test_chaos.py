"""Randomized faults, checked: one short seeded run per database, and the checker caught
by the two planted faults.

devtools/chaos.py runs two ``gunicorn wsgi:app`` instances x two workers on the deployed
settings, a seeded schedule of faults (devtools/chaos_schedule.py) under a reader per
instance and a writer through the API and plain SQL, and devtools/chaos_checker.py checks
the history (its bounds, and their sources, are in its docstrings; tests/unit/
test_chaos_checker.py proves the checks on synthetic histories). Here:

- SQLite, through the command docs/chaos.md shows (``python -m scripts.chaos --seeds 1
  --minutes 0.3 --databases sqlite``): exit status 0 (no violation) and the table's row;
- PostgreSQL (the session's server, the app behind a proxy that partitions and slows it):
  no violation, faults injected, reads checked;
- the planted faults, on the same bounds: the reconciler switched off (plain SQL then
  reaches no cache) and a near-cache TTL of 5 s where the checker assumes the deployed 1 s.
  Each must be reported as stale reads, or the checker proves nothing.

Each run is seconds of traffic plus start-up (its own DynamoDB Local, which the faults
stop and restart; the planted runs, without faults, share the session's).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from devtools import REPOSITORY_ROOT
from devtools.chaos import ChaosOptions, RunOutcome, run_chaos
from devtools.dynamodb_local import DynamoDBLocal
from devtools.postgresql import LocalPostgreSQL

pytestmark = pytest.mark.slow

#: Seconds of faults per suite run: a few faults each, inside the suite's time budget.
SUITE_RUN_SECONDS = 18
SUITE_RUN_MINUTES = SUITE_RUN_SECONDS / 60
PLANTED_RUN_SECONDS = 10
#: Long enough for the command's start-up, run and settling on a busy machine.
COMMAND_TIMEOUT_SECONDS = 240


def explain(outcome: RunOutcome) -> str:
    return "\n".join(outcome.evidence) or "no violation"


def test_a_seeded_run_on_sqlite_through_the_command_finds_no_violation() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.chaos", "--seeds", "1", "--minutes",
         str(SUITE_RUN_MINUTES), "--databases", "sqlite"],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-20000:]
    assert "| 1 | sqlite |" in result.stdout, result.stdout


def test_a_seeded_run_on_postgresql_finds_no_violation(postgresql: LocalPostgreSQL) -> None:
    outcome = run_chaos(ChaosOptions(2, "postgresql", SUITE_RUN_SECONDS), postgresql=postgresql)

    assert outcome.faults, "the schedule injected nothing"
    assert outcome.report.reads_checked > 0
    assert outcome.violations == [], explain(outcome)


@pytest.mark.parametrize(
    ("planted", "write_kinds"),
    [
        ({"CATEGORIES_CACHE_RECONCILE_SECONDS": 0}, ("sql-insert",)),
        ({"CACHE_NEAR_TTL": 5}, ("api-insert",)),
    ],
    ids=["reconciler-off", "near-ttl-5s"],
)
def test_a_planted_fault_is_reported(
    dynamodb_local: DynamoDBLocal, planted: dict[str, float], write_kinds: tuple[str, ...]
) -> None:
    """SQLite (no notifications: plain SQL waits for the reconciler), invalidate, no faults."""
    options = ChaosOptions(
        7,
        "sqlite",
        PLANTED_RUN_SECONDS,
        "invalidate",
        planted,
        faults=False,
        write_kinds=write_kinds,
    )

    outcome = run_chaos(options, dynamodb=dynamodb_local)

    kinds = Counter(violation.kind for violation in outcome.violations)
    assert kinds["stale"] > 0, kinds
    assert "[stale]" in outcome.evidence[0]
