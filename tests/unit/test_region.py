"""cache_backends/region.py's NewestVersion: what a process knows, without a cache or a database.

The region's read and write paths are tested through the app (tests/integration) and
its stale-mark race in tests/integration/test_region.py; here, the object every read
compares with, on a clock the tests step.
"""

from __future__ import annotations

from cache_backends.owed import OwedUpdates
from cache_backends.region import NewestVersion

KEY = "prices"


class SteppedClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def newest_version(
    database_version: object = lambda: 0, clock: SteppedClock | None = None
) -> NewestVersion:
    return NewestVersion(
        owed=OwedUpdates(background=False),
        key=KEY,
        database_version=database_version,  # type: ignore[arg-type]
        hold_seconds=6,
        clock=clock or SteppedClock(),
    )


def test_after_a_recovery_the_next_read_asks_the_database_once_and_holds_its_version() -> None:
    """Another process's write may have failed during this one's outage:
    tests/blackbox/test_coherence.py shows the old list coming back as a HIT without this."""
    database_reads: list[int] = []

    def database_version() -> int:
        database_reads.append(7)
        return 7

    clock = SteppedClock()
    newest = newest_version(database_version, clock)
    assert newest.known() == 0 and database_reads == []  # no outage: no query

    newest.cache_recovered()
    assert [newest.known(), newest.known(), newest.served()] == [7, 7, 7]
    assert database_reads == [7]  # once per recovery, not per read
    clock.now = 6.0
    assert newest.known() == 0  # held for a while only: a restored database must not load for ever


def test_a_failing_database_read_after_a_recovery_is_tried_again_on_the_next_read() -> None:
    answers: list[int | Exception] = [RuntimeError("database down"), 4]

    def database_version() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    newest = newest_version(database_version)
    newest.cache_recovered()

    assert newest.known() == 0
    assert newest.known() == 4


def test_a_write_this_process_owes_is_known_until_it_lands() -> None:
    newest = newest_version()
    newest._owed.owe(KEY, 5, lambda: True)
    assert newest.known() == 5
    newest._owed.settle(KEY, 5)
    assert newest.known() == 0


def test_what_was_served_is_never_served_older_unless_the_database_went_back() -> None:
    """Reads never go back in time, but a database restored to an older version is the truth."""
    clock = SteppedClock()
    newest = newest_version(clock=clock)
    newest.saw(9)
    newest.saw(4)  # an older answer does not lower it
    assert newest.served() == 9

    started_before = clock.now
    clock.now = 1.0
    newest.loaded(8, started=started_before)  # a load older than the floor: a slow snapshot
    assert newest.served() == 9

    clock.now = 2.0
    newest.loaded(3, started=clock.now)  # began after 9 was served, answers 3: restored
    assert newest.served() == 3
