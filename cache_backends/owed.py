"""Cache updates owed until they land: remembered per key, retried in the background.

A write commits, then brings the cache in line (a tombstone, the new value, a
stale mark). That second step is a network call, and a partition or an open
circuit breaker makes it fail or skip it; forgotten, the cache would keep the
list without the write until its TTL. :class:`OwedUpdates` remembers such an
update instead:

- per key, the highest version the cache must reach and how to apply it (a
  callable): an update for a newer version supersedes an older one, and an
  older one arriving late is superseded at once;
- retried on a thread of its own with capped, jittered exponential backoff until
  it lands, or until its retry finds the cache already at or past its version;
- retried at once on :meth:`OwedUpdates.wake` (a cache's recovery: the circuit
  breaker's first successful probe, ``cache_backends.strict.on_recovery``);
- never dropped silently: every outcome is logged and reported to ``on_outcome``
  (metrics), and what is still owed when the process stops (:meth:`drain`) is
  logged as left to the reconciler (``cache_backends.reconciler``), which repairs
  any cache behind the database whatever happened to this process.

Order is not this module's job: an older owed update retried after a newer
write landed elsewhere cannot win, because every apply is a store fenced by
rank (``cache_backends.versioned``); its retry then answers "refused" and the
debt is settled. No Flask here; the thread starts with the first debt, so a
process that never owes anything (a ``flask`` command, most tests) runs none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from enum import StrEnum
from types import MappingProxyType

from cache_backends.background import BackgroundWorker, backoff
from cache_backends.strict import CacheUnavailable

logger = logging.getLogger(__name__)

#: The first retry comes soon (a blip is usually over within it); each failure doubles
#: the wait up to the cap, so a long outage costs one attempt per key every few
#: seconds (and nothing while the breaker is open: a skipped call costs no I/O).
FIRST_RETRY_SECONDS = 0.25
MAX_RETRY_SECONDS = 5.0
#: Each wait is drawn from [1 - JITTER, 1] x the backoff, so that the workers of an
#: instance that all failed together do not all retry in the same instant.
RETRY_JITTER_FRACTION = 0.5
#: Seconds a process's shutdown spends on a last attempt (gunicorn's graceful_timeout is 30).
DRAIN_TIMEOUT_SECONDS = 3.0

#: ``apply()``: True when the update landed, False when the cache refused it because it
#: holds something newer (nothing owed either way); raises CacheUnavailable when the
#: cache could not be asked (still owed).
Apply = Callable[[], bool]


class OwedOutcome(StrEnum):
    """What happened to an owed update (the ``outcome`` label of its metric)."""

    #: An update did not land (failed, or skipped by the open circuit): now owed.
    OWED = "owed"
    #: A retry landed.
    LANDED = "landed"
    #: A retry found the cache at or past the update's version: nothing was owed any more.
    FENCED = "fenced"
    #: A newer update of the key replaced it (owed, or landed on the request path).
    SUPERSEDED = "superseded"
    #: A retry failed again; retried after the backoff.
    RETRY_FAILED = "retry_failed"
    #: Still owed when the process stopped: left to the reconciler.
    ABANDONED = "abandoned"


@dataclass(slots=True)
class _Debt:
    """One key's owed update: its version, how to apply it, and when to try next."""

    version: int
    apply: Apply
    due: float  # on the monotonic clock
    attempts: int = 0
    in_flight: bool = False


@dataclass(eq=False)
class OwedUpdates:
    """Remember cache updates that did not land; retry them until they do.

    :param name: names this registry in log lines and its thread.
    :param on_outcome: called with ``(key, outcome)`` for every :class:`OwedOutcome`.
    :param on_pending: called with the number of keys owed, whenever it changes.
    :param background: retry on a thread of this registry's own (started with
        the first debt). False: only :meth:`retry_due` retries (tests drive it).
    """

    name: str = "cache"
    _: KW_ONLY
    on_outcome: Callable[[str, OwedOutcome], None] = lambda key, outcome: None
    on_pending: Callable[[int], None] = lambda pending: None
    background: bool = True
    first_retry: float = FIRST_RETRY_SECONDS
    max_retry: float = MAX_RETRY_SECONDS
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._debts: dict[str, _Debt] = {}
        self._versions: dict[str, int] = {}  # each debt's version, kept with _debts
        #: Each owed key's version, read without a lock or a call: every read checks it.
        self.versions: Mapping[str, int] = MappingProxyType(self._versions)
        self._lock = threading.Lock()
        self._worker = BackgroundWorker(f"{self.name}-owed-updates", self._round)

    # -- what callers do ---------------------------------------------------------

    def owe(self, key: str, version: int, apply: Apply, reason: object = None) -> None:
        """Remember that ``key`` must reach ``version`` by ``apply()``; retried until it lands."""
        with self._lock:
            current = self._debts.get(key)
            newer_owed = current is not None and current.version > version
            if not newer_owed:
                self._debts[key] = _Debt(version, apply, due=self._backoff_from_now(0))
                self._versions[key] = version
            pending = len(self._debts)
        if not newer_owed and self.background:
            self._worker.start()
            self._worker.wake()
        if current is not None:  # one of the two is superseded: the older
            self._report(key, OwedOutcome.SUPERSEDED)
        if newer_owed:
            return
        logger.warning(
            "%s: update of %r to version %d did not land (%s); owed, retried in the background",
            self.name,
            key,
            version,
            reason or "cache unavailable",
        )
        self._report(key, OwedOutcome.OWED)
        self.on_pending(pending)

    def settle(self, key: str, version: int) -> None:
        """An update of ``key`` to ``version`` landed (on the request path): older debts go."""
        with self._lock:
            current = self._debts.get(key)
            if current is None or current.version > version:
                return
            del self._debts[key], self._versions[key]
            pending = len(self._debts)
        self._report(key, OwedOutcome.SUPERSEDED)
        self.on_pending(pending)

    def pending(self) -> dict[str, int]:
        """Each owed key and the version it must reach."""
        with self._lock:
            return {key: debt.version for key, debt in self._debts.items()}

    @property
    def running(self) -> bool:
        """Whether the retry thread runs (from the first debt until :meth:`drain`)."""
        return self._worker.running

    def version_owed(self, key: str) -> int:
        """The version ``key`` is owed at, 0 if none."""
        return self.versions.get(key, 0)

    def wake(self) -> None:
        """Retry every debt now, not at its backoff (the cache answers again). Thread-safe.

        Only moves the debts' due time and wakes the retry thread: the caller (a
        request whose call was the breaker's successful probe) does no I/O here.
        """
        with self._lock:
            now = self.clock()
            for debt in self._debts.values():
                debt.due = min(debt.due, now)
        self._worker.wake()

    def retry_due(self, *, everything: bool = False) -> int:
        """Apply, on the caller's thread, each debt that is due (or ``everything``); debts left."""
        with self._lock:
            now = self.clock()
            due = [
                (key, debt)
                for key, debt in self._debts.items()
                if not debt.in_flight and (everything or debt.due <= now)
            ]
            for _, debt in due:
                debt.in_flight = True
        for key, debt in due:
            self._retry(key, debt)
        with self._lock:
            return len(self._debts)

    def drain(self, timeout: float = DRAIN_TIMEOUT_SECONDS) -> dict[str, int]:
        """Stop retrying: one last attempt at each debt within ``timeout``; what is still owed.

        For a process's shutdown. What is left is logged and counted as abandoned:
        the reconciler repairs it from another process (or this one's successor).
        """
        deadline = self.clock() + timeout
        self._worker.stop(timeout)
        if self.clock() < deadline:
            self.retry_due(everything=True)
        with self._lock:
            left = {key: debt.version for key, debt in self._debts.items()}
            self._debts.clear()
            self._versions.clear()
        for key, version in left.items():
            logger.warning(
                "%s: update of %r to version %d still owed at shutdown; left to the reconciler",
                self.name,
                key,
                version,
            )
            self._report(key, OwedOutcome.ABANDONED)
        if left:
            self.on_pending(0)
        return left

    # -- the retries ---------------------------------------------------------------

    def _retry(self, key: str, debt: _Debt) -> None:
        try:
            landed = debt.apply()
        except CacheUnavailable as error:
            outcome, failure = OwedOutcome.RETRY_FAILED, error
        except Exception as error:  # a bug in apply must not kill the retry thread
            logger.exception("%s: retry of %r to version %d raised", self.name, key, debt.version)
            outcome, failure = OwedOutcome.RETRY_FAILED, error
        else:
            outcome, failure = (OwedOutcome.LANDED if landed else OwedOutcome.FENCED), None
        with self._lock:
            debt.in_flight = False
            debt.attempts += 1
            current = self._debts.get(key) is debt  # not replaced by a newer debt meanwhile
            if current and failure is None:
                del self._debts[key], self._versions[key]
            elif current:
                debt.due = self._backoff_from_now(debt.attempts)
            pending = len(self._debts)
        if current and failure is not None:
            self._worker.wake()  # retried on another thread (a drain): the worker re-plans
        if failure is not None:
            logger.info(
                "%s: retry %d of %r to version %d failed (%s)",
                self.name,
                debt.attempts,
                key,
                debt.version,
                failure,
            )
        else:
            logger.warning(
                "%s: owed update of %r to version %d %s after %d retries",
                self.name,
                key,
                debt.version,
                "landed" if outcome is OwedOutcome.LANDED else "was overtaken by a newer entry",
                debt.attempts,
            )
        self._report(key, outcome)
        if current:
            self.on_pending(pending)

    def _backoff_from_now(self, attempts: int) -> float:
        """When the next attempt is due after ``attempts`` failures: capped, jittered."""
        wait = backoff(
            attempts, first=self.first_retry, cap=self.max_retry, jitter=RETRY_JITTER_FRACTION
        )
        return self.clock() + wait

    def _report(self, key: str, outcome: OwedOutcome) -> None:
        try:
            self.on_outcome(key, outcome)
        except Exception:  # metrics must never break the cache
            logger.exception("%s: owed-update observer failed", self.name)

    # -- the thread -------------------------------------------------------------------

    def _round(self, woken: bool) -> float | None:
        """Retry what is due; then wait until the next debt is due (or for a wake)."""
        self.retry_due()
        with self._lock:
            waiting = [debt.due for debt in self._debts.values() if not debt.in_flight]
        return None if not waiting else max(0.0, min(waiting) - self.clock())
