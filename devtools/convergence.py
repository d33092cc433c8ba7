"""Has a change reached every worker, and did it stay? Answers watched over time.

:func:`watch` GETs on every pinned worker in rounds and keeps each answer as an
:class:`Observation`; :class:`Convergence` reads them: when the final run of answers
that all show the change began (every worker answering in it), and whether a worker
that had shown the change served a list without it later (the old list coming back,
as when a circuit opened by a partition closes on a stale entry).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devtools.pinned_workers import PinnedWorkers

#: Once every answer shows the change, keep watching this long: it must stay.
KEEP_WATCHING_SECONDS = 1.0
#: Between rounds of GETs.
POLL_INTERVAL_SECONDS = 0.1


@dataclass(frozen=True)
class Observation:
    """One answer: when (seconds after the reference moment), from whom, what it showed."""

    seconds: float
    worker: int
    cache: str
    shows_change: bool


@dataclass(frozen=True)
class Convergence:
    """Every answer the workers gave while being watched, in order."""

    observations: tuple[Observation, ...]
    bound_seconds: float
    #: Distinct workers that must have answered in the final run: a killed worker's
    #: replacement counts once it answers, so "every worker" is not just the survivor.
    expected_workers: int

    @property
    def settled_after(self) -> float | None:
        """When the final run of answers that all show the change began, if every
        worker answered in it; None: it did not (yet)."""
        settled: float | None = None
        streak_workers: set[int] = set()
        for observation in self.observations:
            if not observation.shows_change:
                settled = None
                streak_workers.clear()
                continue
            if settled is None:
                settled = observation.seconds
            streak_workers.add(observation.worker)
        return settled if len(streak_workers) >= self.expected_workers else None

    @property
    def old_list_came_back(self) -> bool:
        """A worker that had shown the change later answered without it."""
        seen: set[int] = set()
        for observation in self.observations:
            if observation.shows_change:
                seen.add(observation.worker)
            elif observation.worker in seen:
                return True
        return False

    @property
    def workers(self) -> set[int]:
        return {observation.worker for observation in self.observations}

    @property
    def watched_seconds(self) -> float:
        return self.observations[-1].seconds if self.observations else 0.0

    @property
    def last_without_change(self) -> Observation | None:
        misses = [o for o in self.observations if not o.shows_change]
        return misses[-1] if misses else None

    def timeline(self) -> str:
        """Each worker's answers, consecutive alike ones merged: "pid: MISS+ 0.0-0.3 s, ...".

        ``+`` shows the change, ``-`` does not; what a failed assertion prints.
        """
        lines = []
        for worker in sorted(self.workers):
            runs: list[tuple[str, float, float]] = []
            for o in (o for o in self.observations if o.worker == worker):
                state = f"{o.cache}{'+' if o.shows_change else '-'}"
                if runs and runs[-1][0] == state:
                    runs[-1] = (state, runs[-1][1], o.seconds)
                else:
                    runs.append((state, o.seconds, o.seconds))
            spans = ", ".join(f"{state} {first:.1f}-{last:.1f} s" for state, first, last in runs)
            lines.append(f"worker {worker}: {spans}")
        return "\n".join(lines)

    def within_bound(self) -> bool:
        settled = self.settled_after
        return settled is not None and settled <= self.bound_seconds

    def describe(self) -> str:
        """The table's cell: when every GET showed it, or what was still served."""
        settled = self.settled_after
        if settled is not None and not self.old_list_came_back:
            return f"{settled:.2f} s"
        last = self.last_without_change
        served = (
            f"{last.cache} without it at {last.seconds:.1f} s"
            if last
            else f"only {len(self.workers)} of {self.expected_workers} workers answered"
        )
        if settled is not None:
            return f"{settled:.2f} s, after the old list again ({served})"
        return f"not within {self.watched_seconds:.1f} s (last: {served})"


def watch(
    workers: PinnedWorkers,
    shows_change: Callable[[list[dict[str, Any]]], bool],
    since: float,
    *,
    bound_seconds: float,
    expected_workers: int,
    at_least_seconds: float = 0.0,
) -> Convergence:
    """GET on every worker in rounds until the outcome is known.

    Known when every answer has shown the change for ``KEEP_WATCHING_SECONDS``
    and at least ``at_least_seconds`` have passed (a circuit may still close and
    bring the old list back), or when ``bound_seconds`` passed without that
    (the bound is missed whatever comes later). ``since`` is ``time.monotonic()``
    at the reference moment.
    """
    observations: list[Observation] = []
    while True:
        workers.repin()
        for pid, answer in workers.get_everywhere().items():
            shown = answer.status == 200 and shows_change(answer.categories)
            observations.append(Observation(time.monotonic() - since, pid, answer.cache, shown))
        convergence = Convergence(tuple(observations), bound_seconds, expected_workers)
        elapsed = time.monotonic() - since
        settled = convergence.settled_after
        if settled is None and elapsed > bound_seconds:
            return convergence
        if settled is not None and elapsed >= max(
            settled + KEEP_WATCHING_SECONDS, at_least_seconds
        ):
            return convergence
        time.sleep(POLL_INTERVAL_SECONDS)
