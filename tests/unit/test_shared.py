"""cache_backends/shared.py: one near copy per instance. Two "processes" are two NearCache
objects sharing one file in a temporary folder, over one remote that counts its reads (a
SimpleCache: the sharing does not depend on the remote). The races are forced: a remote
read held on an event while another process asks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cachelib import SimpleCache

from cache_backends import shared, signals
from cache_backends.near import NearCache
from cache_backends.shared import SharedCopy
from cache_backends.versioned import Body, VersionedEntry, pointer_bytes, pointer_from_bytes
from tests.support.loading import WAIT_SECONDS, second_asks_while_first_is_held

KEY = "prices"
TTL = 30.0
STARTED = time.time()
ONE_DAY_SECONDS = 24 * 3600
#: A wait for another process's copy long enough that waiting it out would show.
LONG_WAIT_SECONDS = 5.0


class CountingRemote(SimpleCache):
    """The shared cache: counts the reads of ``KEY``; can hold one on an event."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.hold: threading.Event | None = None
        self.holding = threading.Event()

    def get(self, key: str) -> Any:
        if key == KEY:
            self.reads += 1
            if self.hold is not None:
                self.holding.set()
                assert self.hold.wait(WAIT_SECONDS)
        return super().get(key)


def pointer(version: int) -> VersionedEntry:
    """The same entry each call, fresh for a day after the module's import (the suite runs
    these minutes after collecting them)."""
    fresh_until = STARTED + ONE_DAY_SECONDS
    return VersionedEntry(Body(f"{KEY}:body:{version}"), version, version, fresh_until, fresh_until)


def process(remote: CountingRemote, folder: Path) -> NearCache:
    """One worker's near-cache, sharing the instance's copy of ``KEY``."""
    near = NearCache(remote, TTL)
    near.share(KEY, SharedCopy(folder / "prices.near", pointer_bytes, pointer_from_bytes))
    return near


def test_one_remote_read_serves_every_process_of_the_instance(tmp_path: Path) -> None:
    """And the signal says which answers the shared copy gave (the metric's source)."""
    remote = CountingRemote()
    remote.set(KEY, pointer(1))
    first, second, third = (process(remote, tmp_path) for _ in range(3))
    answers: list[bool] = []

    def heard(near: object, *, taken: bool) -> None:
        answers.append(taken)

    with signals.shared_copy.connected_to(heard):
        assert first.get(KEY) == pointer(1)
        assert second.get(KEY) == pointer(1)
        assert third.get(KEY) == pointer(1)
    assert remote.reads == 1
    assert answers == [False, True, True]  # read for the instance, then taken twice


def test_a_write_clears_the_shared_copy_and_its_writer_never_takes_an_older_one(
    tmp_path: Path,
) -> None:
    """The writer reads its own write; the others read the remote, not the old copy."""
    remote = CountingRemote()
    remote.set(KEY, pointer(1))
    writer, other = process(remote, tmp_path), process(remote, tmp_path)
    assert writer.get(KEY) == pointer(1)

    writer.delete(KEY)  # a tombstone, as a region's invalidate writes it
    remote.set(KEY, pointer(2))  # and another instance's load

    assert other.get(KEY) == pointer(2)
    assert writer.get(KEY) == pointer(2)


def test_a_shared_copy_older_than_the_ttl_is_not_served(tmp_path: Path) -> None:
    remote = CountingRemote()
    copy = SharedCopy(tmp_path / "prices.near", pointer_bytes, pointer_from_bytes)
    copy.publish(time.time() - TTL - 1, pointer(1))  # read a TTL ago by a process now gone
    remote.set(KEY, pointer(2))

    assert process(remote, tmp_path).get(KEY) == pointer(2)
    assert remote.reads == 1


def test_while_one_process_reads_the_remote_the_others_wait_for_its_copy(
    tmp_path: Path,
) -> None:
    """Forced: the first process's remote read is held until the second is seen waiting
    (the refresh lock taken); released, both answer with one remote read."""
    remote = CountingRemote()
    remote.set(KEY, pointer(1))
    first, second = process(remote, tmp_path), process(remote, tmp_path)
    remote.hold = threading.Event()
    answers, _ = second_asks_while_first_is_held(
        lambda: first.get(KEY), lambda: second.get(KEY), remote.holding, remote.hold
    )

    assert answers == {"first": pointer(1), "second": pointer(1)}
    assert remote.reads == 1


def test_only_fresh_pointers_are_shared_and_a_foreign_file_is_ignored(tmp_path: Path) -> None:
    copy = SharedCopy(tmp_path / "prices.near", pointer_bytes, pointer_from_bytes)
    assert not copy.publish(time.time(), VersionedEntry.tombstone(3))
    assert not copy.publish(time.time(), "a value, not a pointer")
    assert copy.read() is None

    (tmp_path / "foreign.near").write_bytes(b"\x02" + b"\x00" * 7 + b"not ours" * 100)
    foreign = SharedCopy(tmp_path / "foreign.near", pointer_bytes, pointer_from_bytes)
    assert foreign.read() is None


def test_a_process_waits_no_longer_once_the_reader_found_nothing_to_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first process reads a tombstone (never shared): the second, waiting for its
    copy, reads the remote itself as soon as the first is done, not at the end of its
    wait (made long here, so that waiting it out would show)."""
    monkeypatch.setattr(shared, "WAIT_FOR_PUBLISH_SECONDS", LONG_WAIT_SECONDS)
    remote = CountingRemote()
    remote.set(KEY, VersionedEntry.tombstone(2))
    first, second = process(remote, tmp_path), process(remote, tmp_path)
    remote.hold = threading.Event()
    _, waited = second_asks_while_first_is_held(
        lambda: first.get(KEY), lambda: second.get(KEY), remote.holding, remote.hold
    )

    assert waited < LONG_WAIT_SECONDS / 2
    assert remote.reads == 2
