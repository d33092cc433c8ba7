"""A circuit breaker that never holds a lock while DynamoDB is being called.

Why not pybreaker: its ``CircuitBreaker.call`` holds one ``RLock`` for the whole
guarded call, so in a gthread worker every cache request would queue behind
the one in flight. Here the lock only guards the few fields below.

States: *closed* (calls pass; ``failure_threshold`` consecutive failures open
it), *open* (calls are refused at once for ``cooldown`` seconds), then
*half-open* (exactly one caller is let through as a probe; its success closes
the circuit, its failure opens it for another cool-down).

Listeners added with :meth:`CircuitBreaker.add_close_listener` hear the moment a
probe closes the circuit: the cache answers again, so whatever was owed while it
was open (``cache_backends.owed``) can be retried at once instead of at its
next backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

logger = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Count consecutive failures; stop calling a dependency that keeps failing.

    :param name: names the dependency in log lines.
    :param failure_threshold: consecutive failures that open the circuit;
        0 disables the breaker.
    :param cooldown: seconds to stay open before one probe call is allowed.
    """

    def __init__(self, name: str, failure_threshold: int = 5, cooldown: float = 10.0) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._probe_started = 0.0
        self._close_listeners: list[Callable[[], None]] = []

    def add_close_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever a probe closes the circuit (no lock held).

        It runs on the probing caller's thread, often a request: keep it short
        (set an event). An exception it raises is logged, never the caller's.
        """
        with self._lock:
            self._close_listeners.append(listener)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if self._opened_at is None:
                return BreakerState.CLOSED
            if self._probe_in_flight or time.monotonic() - self._opened_at >= self.cooldown:
                return BreakerState.HALF_OPEN
            return BreakerState.OPEN

    def allow(self) -> bool:
        """Whether the caller may call the dependency now (and then must report)."""
        if self.failure_threshold <= 0:
            return True
        with self._lock:
            if self._opened_at is None:
                return True
            now = time.monotonic()
            if self._probe_in_flight or now - self._opened_at < self.cooldown:
                return False
            self._probe_in_flight = True
            self._probe_started = now
            return True

    def _is_probe(self, call_started: float) -> bool:
        # While open, only the probe is let through: a call that started before the
        # circuit opened is a straggler, whose outcome says nothing about now.
        return self._probe_in_flight and call_started >= self._probe_started

    def record_success(self, call_started: float) -> None:
        """Report a call (started at ``time.monotonic()`` = ``call_started``) that worked."""
        with self._lock:
            was_open = self._opened_at is not None
            if was_open and not self._is_probe(call_started):
                return
            self._failures = 0
            self._opened_at = None
            self._probe_in_flight = False
        if was_open:
            logger.warning("%s: circuit closed, calls resume", self.name)
            self._notify_closed()

    def _notify_closed(self) -> None:
        with self._lock:
            listeners = list(self._close_listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:  # a listener's bug must not fail the call that probed
                logger.exception("%s: circuit close listener failed", self.name)

    def record_failure(self, call_started: float) -> None:
        """Report a failed call; the threshold-th in a row, or a failed probe, opens."""
        if self.failure_threshold <= 0:
            return
        with self._lock:
            if self._opened_at is not None:
                if not self._is_probe(call_started):
                    return
                self._probe_in_flight = False
            else:
                self._failures += 1
                if self._failures < self.failure_threshold:
                    return
            self._opened_at = time.monotonic()
            failures = self._failures
        logger.warning(
            "%s: circuit open after %d consecutive failures; calls skipped for %.1fs",
            self.name,
            failures,
            self.cooldown,
        )
