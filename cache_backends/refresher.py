"""A small, bounded pool for background refreshes, drained on shutdown.

A refresh has no caller waiting for it (the reader already has its stale answer,
the writer its 201), so the pool is bounded rather than elastic: a refresh that
does not fit is refused, and the caller gives its lease back so that a later
reader tries again, instead of refreshes piling up behind a slow database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)


class BackgroundRefresher:
    """Run refresh jobs on ``max_workers`` threads, at most ``max_pending`` queued or running.

    :meth:`drain` is for a worker's graceful shutdown: new jobs are refused, and
    the ones accepted get a bounded time to finish.
    """

    def __init__(self, max_workers: int = 1, max_pending: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="cache-refresh")
        self.max_pending = max_pending
        self._pending = 0  # accepted and not yet finished
        self._accepting = True
        self._changed = threading.Condition()

    @property
    def accepting(self) -> bool:
        """False once :meth:`drain` has begun: every later submit is refused."""
        return self._accepting

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False if the pool is full or shut down (nothing will run)."""
        with self._changed:
            if not self._accepting or self._pending >= self.max_pending:
                return False
            self._pending += 1
        try:
            self._pool.submit(self._run, job)
        except RuntimeError:  # shut down
            self._finished()
            return False
        return True

    def drain(self, timeout: float | None = None) -> bool:
        """Refuse new jobs and wait for the accepted ones; True if all finished in time."""
        self._accepting = False
        self._pool.shutdown(wait=False)  # its own wait has no timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # a refresh has no caller to raise to
            logger.exception("background cache refresh failed")
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._changed:
            self._pending -= 1
            self._changed.notify_all()
