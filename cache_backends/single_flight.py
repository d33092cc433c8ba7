"""One call per key per process at a time; the threads that arrive meanwhile share its answer.

In the spirit of Go's ``singleflight``: when a near copy ends, or a cached
value is missing, the first thread of a process does the work (a remote read, a
load under the lease) and the others wait for its result instead of repeating
it, so a process costs the shared cache, or the database, one call however many
of its threads are asking. No cache or Flask here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Calls under way, by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Future[T]] = {}
        self._followers: dict[Hashable, int] = {}

    def followers(self, key: Hashable) -> int:
        """Threads that joined the call under way for ``key`` (0 if none is): diagnostics."""
        with self._lock:
            return self._followers.get(key, 0)

    def run(
        self,
        key: Hashable,
        work: Callable[[], T],
        *,
        timeout: float | None = None,
        on_wait: Callable[[], None] = lambda: None,
    ) -> tuple[T, bool]:
        """``(work(), True)`` for the thread that leads, ``(its result, False)`` for the others.

        A follower calls ``on_wait`` before it waits, and waits at most
        ``timeout`` seconds (``concurrent.futures.TimeoutError`` after that: the
        leader's work may hang, and the follower can then do its own). The
        leader's exception reaches every follower too.
        """
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
            else:
                self._followers[key] = self._followers.get(key, 0) + 1
        if not leading:
            on_wait()
            return flight.result(timeout), False
        try:
            result = work()
        except BaseException as error:
            self._end(key)
            flight.set_exception(error)
            raise
        # Ended first: a follower that refuses this answer (too old for it) must find
        # no flight, or a newer one, when it asks again.
        self._end(key)
        flight.set_result(result)
        return result, True

    def _end(self, key: Hashable) -> None:
        with self._lock:
            del self._flights[key]
            self._followers.pop(key, None)
