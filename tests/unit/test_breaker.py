"""The circuit breaker's state machine (pure logic: no I/O to fake)."""

from __future__ import annotations

import time

from cache_backends.breaker import BreakerState, CircuitBreaker


def fail(breaker: CircuitBreaker) -> None:
    assert breaker.allow()
    breaker.record_failure(time.monotonic())


def test_opens_after_the_threshold_and_skips_calls() -> None:
    breaker = CircuitBreaker("test", failure_threshold=3, cooldown=60)
    fail(breaker)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow() is False


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker("test", failure_threshold=2, cooldown=60)
    fail(breaker)
    breaker.record_success(time.monotonic())
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_one_probe_after_the_cooldown_then_closed_on_success() -> None:
    breaker = CircuitBreaker("test", failure_threshold=1, cooldown=0.05)
    fail(breaker)
    time.sleep(0.06)
    assert breaker.allow() is True
    probe_started = time.monotonic()  # as Transport.call takes it: after allow()
    assert breaker.allow() is False, "only one probe at a time"
    breaker.record_success(probe_started)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() is True


def test_a_failed_probe_opens_for_another_cooldown() -> None:
    breaker = CircuitBreaker("test", failure_threshold=1, cooldown=0.05)
    fail(breaker)
    time.sleep(0.06)
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow() is False


def test_a_straggler_from_before_the_opening_is_not_the_probe() -> None:
    breaker = CircuitBreaker("test", failure_threshold=1, cooldown=0.05)
    straggler_started = time.monotonic()  # in flight while the circuit opens
    fail(breaker)
    time.sleep(0.06)
    assert breaker.allow() is True  # the probe goes out
    breaker.record_failure(straggler_started)
    breaker.record_success(straggler_started)
    assert breaker.state is BreakerState.HALF_OPEN, "the straggler changed nothing"
    assert breaker.allow() is False, "still exactly one probe"


def test_a_zero_threshold_disables_it() -> None:
    breaker = CircuitBreaker("test", failure_threshold=0)
    for _ in range(100):
        fail(breaker)
    assert breaker.state is BreakerState.CLOSED
