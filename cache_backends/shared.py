"""One key's near copy shared by an instance's processes: one remote read per instance.

A near-cache (``near.py``) bounds the remote's reads of a hot key per *process*: every
gunicorn worker of every instance reads it once per ``ttl``. :class:`SharedCopy` makes
that once per *instance*: the processes of one host share a small file, mapped by each,
that holds the copy one of them last read from the remote, and when (wall clock). A
process whose own copy ended takes the shared one while it is younger than ``ttl``,
so the staleness bound is the near-cache's own; and when the shared copy is too old
too, one process (whoever takes the file's refresh lock first) reads the remote and
publishes, while the others wait a moment for it instead of reading too.

Only what ``encode`` accepts is shared: the caller's small, plain values (a region's
pointer, never its body), written as bytes that ``decode`` reads back. No pickle: the
file is the instance's own, but nothing read from outside a process is loaded as code.

The file's layout: a sequence number (odd while a write is under way), the copy's read
time, its length, then the bytes. Readers take no lock (a write that races a read is
detected by the sequence number and the read is tried again); writers hold an exclusive
``flock`` on the file for the few microseconds of a write. The refresh lock is a second
``flock``, on a file beside it, held for one remote read and never waited on.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

#: Sequence, read time (epoch seconds), payload length.
_HEADER = struct.Struct("<qdI")
#: The file's size: a pointer is a few hundred bytes.
SHARED_FILE_BYTES = 4096
MAX_PAYLOAD_BYTES = SHARED_FILE_BYTES - _HEADER.size
_READ_ATTEMPTS = 4
#: How long a process waits for another's remote read before reading itself, and how
#: often it looks meanwhile: a read of the remote takes a few milliseconds.
WAIT_FOR_PUBLISH_SECONDS = 0.2
POLL_SECONDS = 0.005

Encode = Callable[[Any], bytes | None]
Decode = Callable[[bytes], Any]


class SharedCopy:
    """The shared copy of one key, in ``path`` (see the module docstring)."""

    def __init__(self, path: Path, encode: Encode, decode: Decode) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.encode = encode
        self.decode = decode
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(descriptor).st_size < SHARED_FILE_BYTES:
                os.ftruncate(descriptor, SHARED_FILE_BYTES)
            self._map = mmap.mmap(descriptor, SHARED_FILE_BYTES)
        finally:
            os.close(descriptor)  # the mapping keeps the file
        self._refresh_lock_path = path.with_name(path.name + ".refresh")

    def read(self) -> tuple[float, Any] | None:
        """The shared copy and when it was read from the remote; None if there is none."""
        for _ in range(_READ_ATTEMPTS):
            sequence, read_at, length = _HEADER.unpack_from(self._map)
            if sequence == 0 or length == 0 or length > MAX_PAYLOAD_BYTES:
                return None
            payload = self._map[_HEADER.size : _HEADER.size + length]
            if sequence % 2 == 0 and _HEADER.unpack_from(self._map)[0] == sequence:
                try:
                    return read_at, self.decode(payload)
                except ValueError:  # not what encode writes: ignored, never served
                    return None
        return None  # a write kept racing this read: the remote answers instead

    def publish(self, read_at: float, value: Any) -> bool:
        """Share ``value``, read from the remote at ``read_at``; False if it cannot be."""
        payload = self.encode(value)
        if payload is None or len(payload) > MAX_PAYLOAD_BYTES:
            return False
        self._write(read_at, payload)
        return True

    def clear(self) -> None:
        """No shared copy: after this process's write, the others read the remote."""
        self._write(0.0, b"")

    def refresh(self, fresh_for: float, read: Callable[[], Any]) -> tuple[float, Any] | None:
        """A copy younger than ``fresh_for``: read by this process (``read()``, then
        published) if it takes the refresh lock, else the one another process publishes
        within ``WAIT_FOR_PUBLISH_SECONDS``. None: read the remote yourself."""

        def published() -> tuple[float, Any] | None:
            shared = self.read()
            return shared if shared is not None and time.time() - shared[0] < fresh_for else None

        def read_and_publish() -> tuple[float, Any]:
            read_at = time.time()
            value = read()
            if value is not None:
                self.publish(read_at, value)
            return read_at, value

        return once_per_instance(self._refresh_lock_path, published, read_and_publish)

    def _write(self, read_at: float, payload: bytes) -> None:
        with self.path.open("rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            sequence = _HEADER.unpack_from(self._map)[0]
            sequence += 1 + sequence % 2  # odd: a write is under way
            _HEADER.pack_into(self._map, 0, sequence, read_at, 0)
            self._map[_HEADER.size : _HEADER.size + len(payload)] = payload
            _HEADER.pack_into(self._map, 0, sequence + 1, read_at, len(payload))


T = TypeVar("T")


def once_per_instance(
    lock_path: Path, published: Callable[[], T | None], read: Callable[[], T]
) -> T | None:
    """``read()`` by the one process of the instance that takes ``lock_path``'s ``flock``;
    the others wait up to ``WAIT_FOR_PUBLISH_SECONDS`` for ``published()`` to answer what it
    published. None: nothing was published in time, or its reader is done without
    publishing (it read nothing to share): read it yourself.

    The lock is never waited on, and the kernel drops it with a process that dies
    holding it, so a dead reader costs the others one wait at most.
    """
    lock_file = _try_lock(lock_path)
    if lock_file is None:
        deadline = time.monotonic() + WAIT_FOR_PUBLISH_SECONDS
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            over = _lock_free(lock_path)  # before published(): what it published is there
            value = published()
            if value is not None:
                return value
            if over:
                return None
        return None
    try:
        return read()
    finally:
        lock_file.close()


def _lock_free(path: Path) -> bool:
    """Whether nobody holds ``path``'s lock now (its holder is done)."""
    lock_file = _try_lock(path)
    if lock_file is None:
        return False
    lock_file.close()
    return True


def _try_lock(path: Path) -> BinaryIO | None:
    lock_file = path.open("ab")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        return None
    return lock_file
