"""The region's background work, written once: a worker thread's lifecycle, its backoff,
and the election of one process per instance.

Three things run beside a process's requests: owed updates retried until they land
(``owed.py``), the reconciler (``reconciler.py``), and an instance's change listener
(``ecommerce.categories.changes``). Each is one :class:`BackgroundWorker`: a daemon
thread that waits, runs one step, and waits again for as long as the step says,
woken early by :meth:`~BackgroundWorker.wake`, stopped for good by
:meth:`~BackgroundWorker.stop`. (Background refreshes are a bounded pool instead,
``refresher.py``: their jobs have no loop.) What one process of an instance does for
all of its processes (the listener, the reconciler's rounds) goes to the holder of an
:class:`InstanceLock`, so that its cost grows with instances, not with processes; and
what one process tells the others (the version the listener heard, a version a write
still owes) is a :class:`SharedVersion`, read on every hit without a lock.

Every wait that could make a fleet act in step is drawn with jitter, through
:func:`backoff`: processes started together (a deploy), or failing together (an
outage), then spread out instead of retrying in the same instant.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import random
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

#: Seconds stop() waits for a step in flight (each step's calls have their own timeouts).
STOP_TIMEOUT_SECONDS = 5.0
#: After a step raised (a bug: steps handle their own failures), wait this long.
AFTER_A_BUG_SECONDS = 1.0


def jittered(seconds: float, fraction: float) -> float:
    """``seconds`` less up to ``fraction`` of it, drawn uniformly (1.0: "full jitter")."""
    return seconds * (1 - fraction * random.random())


def backoff(attempt: int, *, first: float, cap: float, jitter: float = 0.0) -> float:
    """The wait before retry ``attempt`` (0 for the first): ``first`` doubled per attempt up
    to ``cap``, jittered down by up to ``jitter`` of it (AWS's "exponential backoff and
    jitter"; 1.0 is its full jitter)."""
    return jittered(min(cap, first * 2**attempt), jitter)


#: ``step(woken)`` runs one round; ``woken``: wake() was called since the last one.
#: Returns the seconds to wait before the next round, None to wait for a wake.
Step = Callable[[bool], float | None]


class BackgroundWorker:
    """A daemon thread that runs ``step`` in rounds until stopped (see the module).

    :param name: the thread's name (it shows in py-spy and thread dumps).
    :param step: one round; see :data:`Step`. Its exceptions are logged, never fatal.
    :param first_wait: seconds (a callable, for jitter) before the first round.
    """

    def __init__(
        self, name: str, step: Step, first_wait: Callable[[], float | None] = lambda: 0.0
    ) -> None:
        self.name = name
        self.step = step
        self.first_wait = first_wait
        #: Set by stop(): a step that blocks (a listener) waits on it to end early.
        self.stopping = threading.Event()
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread (idempotent; never again after stop)."""
        if self._thread is not None:
            return  # the lock-free check every request makes once started
        with self._guard:
            if self._thread is None and not self.stopping.is_set():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def wake(self) -> None:
        """Run the next round now. Thread-safe; a wake before start() is kept."""
        self._woken.set()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Stop for good; True once the thread has ended (or never ran)."""
        self.stopping.set()
        self._woken.set()
        with self._guard:
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        wait = self.first_wait()
        while True:
            woken = self._woken.wait(wait)
            self._woken.clear()
            if self.stopping.is_set():
                return
            try:
                wait = self.step(woken)
            except Exception:  # the thread must outlive any one round's bug
                logger.exception("%s: a background round raised", self.name)
                wait = AFTER_A_BUG_SECONDS


class InstanceLock:
    """Which one process of an instance does a job for all of them.

    An instance is the processes that share a directory (gunicorn's workers on one
    host); the holder is the one with an exclusive ``flock`` on ``path``. Never
    blocks: :meth:`acquire` answers at once, and a process that is not elected asks
    again at its next round. The kernel drops the lock with its holder (a crash, a
    SIGKILL included), so a dead holder's place is taken at the next ask. A
    directory that cannot hold the file elects every process (logged once): the
    job is then done by each, as if each were an instance of its own.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._unusable = False

    @property
    def held(self) -> bool:
        return self._file is not None or self._unusable

    def acquire(self) -> bool:
        """Whether this process holds the lock now (taking it if it is free)."""
        if self.held:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_file = self.path.open("ab")
        except OSError:
            logger.warning(
                "no instance lock at %s: every process of the instance does its job",
                self.path,
                exc_info=True,
            )
            self._unusable = True
            return True
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            return False
        self._file = lock_file
        return True

    def release(self) -> None:
        """Give the lock up (closing the file releases it); idempotent."""
        lock_file, self._file = self._file, None
        if lock_file is not None:
            lock_file.close()


#: A read of a SharedVersion that keeps racing writes gives up after this many tries.
_SHARED_READ_ATTEMPTS = 4
#: Sequence (odd while a write is under way), version, time (epoch seconds).
_STAMPED = struct.Struct("<qqd")


class SharedVersion:
    """A version and a time, shared by an instance's processes through a file each maps.

    A read takes no lock and makes no system call (a sequence number catches a write
    racing it): a few hundred nanoseconds, cheap enough for every hit. Writers hold an
    exclusive ``flock`` on the file, so any process may write. None until one did.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(descriptor).st_size < _STAMPED.size:
                os.ftruncate(descriptor, _STAMPED.size)
            self._map = mmap.mmap(descriptor, _STAMPED.size)
        finally:
            os.close(descriptor)  # the mapping keeps the file

    def read(self) -> tuple[int, float] | None:
        """(version, time) as last written; None if none was (or a write kept racing this)."""
        for _ in range(_SHARED_READ_ATTEMPTS):
            sequence, version, at = _STAMPED.unpack_from(self._map)
            if sequence == 0:
                return None
            if sequence % 2 == 0 and _STAMPED.unpack_from(self._map)[0] == sequence:
                return version, at
        return None  # a hint: skipping it costs freshness, never correctness

    def write(self, version: int, at: float) -> None:
        with self.path.open("rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            self._write(version, at)

    def raise_to(self, version: int, until: float) -> None:
        """Hold ``version`` until ``until`` unless a newer one is held longer (read and
        written under the lock, so two processes raising at once keep the newer)."""
        with self.path.open("rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            current = self.read()
            held = 0 if current is None or current[1] <= time.time() else current[0]
            if held > version and current is not None and current[1] >= until:
                return
            self._write(max(version, held), until)

    def close(self) -> None:
        self._map.close()

    def _write(self, version: int, at: float) -> None:
        sequence = _STAMPED.unpack_from(self._map)[0]
        sequence += 1 + sequence % 2  # odd: a write is under way
        _STAMPED.pack_into(self._map, 0, sequence, version, at)
        _STAMPED.pack_into(self._map, 0, sequence + 1, version, at)
