"""BackgroundRefresher (cache_backends/refresher.py): bounded, and drained on shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from cache_backends.refresher import BackgroundRefresher
from tests.support.loading import WAIT_SECONDS, blocked_until


def test_submit_beyond_max_pending_is_refused() -> None:
    """max_pending counts queued and running jobs: while they are blocked, one more is refused."""
    refresher = BackgroundRefresher(max_workers=1, max_pending=2)
    gate = threading.Event()
    ran: list[int] = []

    def job(number: int) -> Callable[[], None]:
        def run() -> None:
            gate.wait(WAIT_SECONDS)
            ran.append(number)

        return run

    try:
        assert refresher.submit(job(1)) is True  # running, blocked
        assert refresher.submit(job(2)) is True  # queued
        assert refresher.submit(job(3)) is False
    finally:
        gate.set()
        assert refresher.drain(WAIT_SECONDS)
    assert ran == [1, 2]


def test_drain_waits_for_queued_jobs() -> None:
    """The first job holds the only worker until drain has begun; drain still returns only
    once the two jobs queued behind it have run. Then new jobs are refused."""
    refresher = BackgroundRefresher(max_workers=1, max_pending=3)
    ran: list[int] = []
    drain_began_first: list[bool] = []

    def job(number: int) -> Callable[[], None]:
        def run() -> None:
            if number == 1:
                deadline = time.monotonic() + WAIT_SECONDS
                while refresher.accepting and time.monotonic() < deadline:
                    time.sleep(0.001)
                drain_began_first.append(not refresher.accepting)
            ran.append(number)

        return run

    assert all(refresher.submit(job(number)) for number in (1, 2, 3))
    assert refresher.drain() is True
    assert ran == [1, 2, 3]
    assert drain_began_first == [True]
    assert refresher.submit(job(4)) is False, "refused after drain"
    assert ran == [1, 2, 3]


def test_drain_with_a_timeout_reports_unfinished_jobs() -> None:
    """drain(timeout) gives up on a job still blocked and says so; a later drain finishes."""
    refresher = BackgroundRefresher()
    gate = threading.Event()
    assert refresher.submit(blocked_until(gate))
    assert refresher.drain(timeout=0.05) is False
    assert refresher.submit(lambda: None) is False, "already refusing"
    gate.set()
    assert refresher.drain(WAIT_SECONDS) is True


def test_a_failing_job_frees_its_slot(caplog: pytest.LogCaptureFixture) -> None:
    """A refresh that raises is logged, and its slot is given back."""
    refresher = BackgroundRefresher(max_workers=1, max_pending=2)
    holding, gate = threading.Event(), threading.Event()

    def fail() -> None:
        raise RuntimeError("database down")

    def hold() -> None:
        holding.set()
        gate.wait(WAIT_SECONDS)

    try:
        assert refresher.submit(fail)
        assert refresher.submit(hold)
        # One worker: hold runs only once fail's wrapper has returned, slot given back.
        assert holding.wait(WAIT_SECONDS)
        assert refresher.submit(blocked_until(gate)) is True, "the failed job's slot is free"
        assert refresher.submit(blocked_until(gate)) is False, "and only that one"
    finally:
        gate.set()
        assert refresher.drain(WAIT_SECONDS)
    assert "background cache refresh failed" in caplog.text
    assert "database down" in caplog.text
