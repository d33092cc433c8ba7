"""cache_backends/bodies.py: each body read from the cache once per instance. Two "processes"
are two SharedBodies objects on one temporary folder, signed by the fleet's codec; the
remote is a function that counts its reads. The race is forced: the first process's read is
held on an event while the second asks."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cache_backends import bodies, shared
from cache_backends.bodies import KEEP_BODIES, SharedBodies
from cache_backends.codec import EntryCodec
from tests.support.loading import WAIT_SECONDS, second_asks_while_first_is_held

BODY_KEY = "prices:body:1f2e"
VALUE = {"prices": [{"sku": "tea", "cents": 350}] * 100}
#: A wait for another process's body long enough that waiting it out would show.
LONG_WAIT_SECONDS = 5.0


class CountingRead:
    """The cache's read of one body: counts its calls; can hold one on an event."""

    def __init__(self, value: Any = VALUE) -> None:
        self.value = value
        self.calls = 0
        self.hold: threading.Event | None = None
        self.holding = threading.Event()

    def __call__(self) -> Any:
        self.calls += 1
        if self.hold is not None:
            self.holding.set()
            assert self.hold.wait(WAIT_SECONDS)
        return self.value


def process(folder: Path, signing_key: str = "fleet key") -> SharedBodies:
    return SharedBodies(folder, EntryCodec(signing_key))


def body_file(folder: Path) -> Path:
    (found,) = folder.glob("*.body")
    return found


def test_a_body_one_process_read_or_stored_is_not_read_again_by_the_instance(
    tmp_path: Path,
) -> None:
    read = CountingRead()
    assert process(tmp_path).get(BODY_KEY, read) == VALUE
    assert process(tmp_path).get(BODY_KEY, read) == VALUE
    assert read.calls == 1

    process(tmp_path).publish("prices:body:9a9a", {"stored": "by its writer"})
    assert process(tmp_path).get("prices:body:9a9a", read) == {"stored": "by its writer"}
    assert read.calls == 1


@pytest.mark.parametrize(("found", "reads"), [(VALUE, 1), (None, 2)], ids=["read", "gone"])
def test_while_one_process_reads_a_body_the_others_wait_for_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found: Any, reads: int
) -> None:
    """The second process takes the body the first read from its file. When the first found
    none (the body expired), nothing is published, and the second reads itself as soon as
    the first is done, not at the end of its wait (made long here, so waiting would show)."""
    monkeypatch.setattr(shared, "WAIT_FOR_PUBLISH_SECONDS", LONG_WAIT_SECONDS)
    read = CountingRead(found)
    read.hold = threading.Event()
    first, second = process(tmp_path), process(tmp_path)
    answers, waited = second_asks_while_first_is_held(
        lambda: first.get(BODY_KEY, read),
        lambda: second.get(BODY_KEY, read),
        read.holding,
        read.hold,
    )

    assert answers == {"first": found, "second": found}
    assert waited < LONG_WAIT_SECONDS / 2
    assert read.calls == reads
    assert bool(list(tmp_path.glob("*.body"))) is (found is not None)


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated"),
        pytest.param(lambda blob: blob[:-1] + bytes([blob[-1] ^ 1]), id="one-bit-flipped"),
        pytest.param(lambda blob: b"\x07" + blob[1:], id="unknown-format"),
        pytest.param(lambda blob: b"", id="empty"),
    ],
)
def test_a_spoilt_body_file_is_never_served_and_is_replaced(tmp_path: Path, spoil: Any) -> None:
    process(tmp_path).publish(BODY_KEY, {"old": "value"})
    path = body_file(tmp_path)
    path.write_bytes(spoil(path.read_bytes()))
    read = CountingRead()

    assert process(tmp_path).get(BODY_KEY, read) == VALUE
    assert read.calls == 1
    assert process(tmp_path).get(BODY_KEY, read) == VALUE  # republished, whole
    assert read.calls == 1


def test_a_file_signed_without_the_fleets_key_or_for_another_body_is_never_served(
    tmp_path: Path,
) -> None:
    """A forger's file (its own key) and a genuine file renamed to another body's name
    fail verification: nothing in them is unpickled."""
    process(tmp_path, signing_key="a forger's key").publish(BODY_KEY, {"forged": True})
    read = CountingRead()
    assert process(tmp_path).get(BODY_KEY, read) == VALUE
    assert read.calls == 1

    genuine = body_file(tmp_path)
    other = process(tmp_path / "other")
    other.publish("prices:body:other", {"another": "body"})
    os.replace(body_file(tmp_path / "other"), other._path(BODY_KEY))
    assert other.get(BODY_KEY, read) == VALUE
    assert read.calls == 2
    assert genuine.exists()


def test_a_writer_that_died_mid_publish_leaves_the_published_body_whole(tmp_path: Path) -> None:
    """Its half-written temporary is never read, and is removed once old."""
    process(tmp_path).publish(BODY_KEY, VALUE)
    abandoned = tmp_path / ".dead-writer.tmp"
    abandoned.write_bytes(b"half a bo")
    read = CountingRead()
    assert process(tmp_path).get(BODY_KEY, read) == VALUE
    assert read.calls == 0

    long_ago = time.time() - bodies.ABANDONED_SECONDS - 1
    os.utime(abandoned, (long_ago, long_ago))
    process(tmp_path).publish("prices:body:next", VALUE)
    assert not abandoned.exists()


def test_only_the_newest_bodies_are_kept(tmp_path: Path) -> None:
    instance = process(tmp_path)
    for number in range(KEEP_BODIES + 3):
        instance.publish(f"prices:body:{number}", {"number": number})
        written_at = time.time() - 100 + number  # distinct, and older than the next one
        os.utime(instance._path(f"prices:body:{number}"), (written_at, written_at))
    kept = {path.name for path in tmp_path.glob("*.body")}
    newest = range(3, KEEP_BODIES + 3)
    assert kept == {instance._path(f"prices:body:{number}").name for number in newest}
