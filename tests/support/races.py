"""A database load paused right after its snapshot: the moment a reader/writer race needs.

The ``paused_load`` fixture (tests/conftest.py) hooks it into the point where
``DB_LATENCY_MS`` waits after reading, so the paused load is a slow query that
started before whatever the test does next.
"""

from __future__ import annotations

import threading

#: A paused step that never resumes must fail the test, not hang it.
PAUSE_TIMEOUT_SECONDS = 10.0


class PausedLoad:
    """Pauses the next list load made by a thread other than the test's own.

    The load has read its snapshot (list and version) when it pauses: it is a
    slow query that started before whatever the test does next.
    """

    def __init__(self) -> None:
        self.snapshot_taken = threading.Event()
        self.resume = threading.Event()
        self._test_thread = threading.get_ident()
        self._armed = False
        self._lock = threading.Lock()

    def arm(self) -> None:
        self._armed = True

    def after_snapshot(self) -> None:
        with self._lock:
            pause = self._armed and threading.get_ident() != self._test_thread
            self._armed = self._armed and not pause
        if pause:
            self.snapshot_taken.set()
            assert self.resume.wait(PAUSE_TIMEOUT_SECONDS), "the paused load was never resumed"

    def wait_until_paused(self) -> None:
        assert self.snapshot_taken.wait(PAUSE_TIMEOUT_SECONDS), "no load reached the pause"
