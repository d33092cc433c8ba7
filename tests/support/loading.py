"""Forcing interleavings: loads that pause on events, event recorders, threads released together.

Every race test pauses a step on an event and releases it once the other side
got where it must be; a step that is never released fails after WAIT_SECONDS
instead of hanging the suite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cache_backends.loader import LoaderEvent

#: A paused step that never resumes must fail the test, not hang it.
WAIT_SECONDS = 10.0


class Load:
    """A ``load`` callable returning ``(value, version)`` that counts its calls.

    With a ``gate`` it pauses after "reading its snapshot" until the gate opens:
    ``entered`` tells the test it got there.
    """

    def __init__(self, value: Any, version: int, gate: threading.Event | None = None) -> None:
        self.value = value
        self.version = version
        self.gate = gate
        self.entered = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[Any, int]:
        with self._lock:
            self.calls += 1
        self.entered.set()
        if self.gate is not None and not self.gate.wait(WAIT_SECONDS):
            raise TimeoutError("the test never released this load")
        return self.value, self.version


def never_called() -> Load:
    """A load that a HIT must not call (checked through ``calls``)."""
    return Load("must not be loaded", -1)


class Events:
    """``on_event`` recorder, safe across threads."""

    def __init__(self) -> None:
        self.seen: list[LoaderEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: LoaderEvent) -> None:
        with self._lock:
            self.seen.append(event)

    def count(self, event: LoaderEvent) -> int:
        with self._lock:
            return self.seen.count(event)


class FakeClock:
    """The loader's ``clock``: real time at first, moved on only by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Start ``count`` threads released together by a barrier; fail if any is still running."""
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait(WAIT_SECONDS)
        target(index)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a thread is still blocked"


def blocked_until(gate: threading.Event) -> Callable[[], None]:
    """A job that holds its worker until ``gate`` opens."""

    def job() -> None:
        gate.wait(WAIT_SECONDS)

    return job


def start_of_a_second() -> None:
    """Wait (at most 0.1 s) unless more than 0.1 s remain in this wall-clock second.

    SimpleCache stores ``int(time()) + timeout``: a 1 s item added at x.999 lives
    1 ms. Added early in a second, it outlives the few milliseconds that follow.
    """
    fraction = time.time() % 1
    if fraction > 0.9:
        time.sleep(1 - fraction + 0.005)


#: Time for a second process's call to find the first holding its lock and start waiting.
SECOND_CALLER_HEAD_START = 0.02


def second_asks_while_first_is_held(
    first: Callable[[], Any],
    second: Callable[[], Any],
    holding: threading.Event,
    hold: threading.Event,
) -> tuple[dict[str, Any], float]:
    """``first()`` on a thread until its read is held (``holding`` set), then ``second()`` on
    another; ``hold`` released a moment later. Both answers, and the seconds ``second`` took.

    The shape of every "one process of the instance reads, the others wait" race: the
    second caller finds the first holding the instance's lock, whenever it gets there.
    """
    answers: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: answers.update(first=first()))
    reader.start()
    assert holding.wait(WAIT_SECONDS)
    started = time.monotonic()
    waiter = threading.Thread(target=lambda: answers.update(second=second()))
    waiter.start()
    time.sleep(SECOND_CALLER_HEAD_START)
    hold.set()
    reader.join(WAIT_SECONDS)
    waiter.join(WAIT_SECONDS)
    assert not reader.is_alive() and not waiter.is_alive()
    return answers, time.monotonic() - started
