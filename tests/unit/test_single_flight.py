"""SingleFlight (cache_backends/single_flight.py): one call per key, its answer shared."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pytest

from cache_backends.single_flight import SingleFlight
from tests.support.loading import WAIT_SECONDS


def in_thread(
    flights: SingleFlight[str], key: str, work: Callable[[], str]
) -> tuple[threading.Thread, list[Any]]:
    """``flights.run(key, work)`` on a thread of its own; its result (or error) in the list."""
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(flights.run(key, work))
        except Exception as error:  # the test looks at what the caller got
            results.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.001)


def test_followers_share_the_leaders_answer_and_do_no_work() -> None:
    flights: SingleFlight[str] = SingleFlight()
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def work() -> str:
        calls.append("leader")
        entered.set()
        assert release.wait(WAIT_SECONDS)
        return "answer"

    leader, led = in_thread(flights, "k", work)
    assert entered.wait(WAIT_SECONDS)
    followers = [in_thread(flights, "k", lambda: "own") for _ in range(3)]
    wait_for(lambda: flights.followers("k") == 3)
    release.set()
    for thread, _ in [(leader, led), *followers]:
        thread.join(WAIT_SECONDS)

    assert led == [("answer", True)]
    assert all(result == [("answer", False)] for _, result in followers)
    assert calls == ["leader"]
    assert flights.followers("k") == 0, "the flight is over"


def test_the_leaders_exception_reaches_every_follower() -> None:
    flights: SingleFlight[str] = SingleFlight()
    entered, release = threading.Event(), threading.Event()

    def fail() -> str:
        entered.set()
        assert release.wait(WAIT_SECONDS)
        raise ConnectionError("cache down")

    leader, led = in_thread(flights, "k", fail)
    assert entered.wait(WAIT_SECONDS)
    follower, followed = in_thread(flights, "k", lambda: "never")
    wait_for(lambda: flights.followers("k") == 1)
    release.set()
    leader.join(WAIT_SECONDS)
    follower.join(WAIT_SECONDS)

    assert isinstance(led[0], ConnectionError) and isinstance(followed[0], ConnectionError)
    assert flights.run("k", lambda: "next") == ("next", True), "a new flight after the failure"


def test_a_follower_waits_at_most_its_timeout() -> None:
    flights: SingleFlight[str] = SingleFlight()
    entered, release = threading.Event(), threading.Event()

    def hang() -> str:
        entered.set()
        assert release.wait(WAIT_SECONDS)
        return "late"

    leader, _ = in_thread(flights, "k", hang)
    assert entered.wait(WAIT_SECONDS)
    waited: list[str] = []
    try:
        with pytest.raises(FutureTimeout):
            flights.run("k", lambda: "own", timeout=0.01, on_wait=lambda: waited.append("w"))
    finally:
        release.set()
        leader.join(WAIT_SECONDS)
    assert waited == ["w"]


def test_keys_fly_apart() -> None:
    flights: SingleFlight[str] = SingleFlight()
    assert flights.run("a", lambda: "A") == ("A", True)
    assert flights.run("b", lambda: "B") == ("B", True)
