"""Background processes that leave nothing behind, and what a stop signal means.

Every helper here exists because the obvious call leaks something: a gunicorn
worker that outlives its master, a JVM orphaned by a Ctrl-C, a Prometheus
directory left in TMPDIR by a SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.client import HTTPConnection
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

#: Then SIGKILL: gunicorn finishes in-flight requests on SIGTERM, and these set-ups have
#: none that take more than milliseconds; a process still there is stuck.
STOP_TIMEOUT_SECONDS = 10.0
#: Ctrl-C in a terminal (to the whole foreground process group), and what make,
#: systemd and CI send (often to this process alone).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def terminate(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM: gunicorn's graceful stop, the one systemd uses; nginx's fast one.

    Signal every process before waiting for any, and they stop in parallel.
    """
    for process in processes:
        process.send_signal(signal.SIGTERM)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and everything it started, leaving no orphan behind.

    Each process leads its own process group (``start_new_session``), so once it
    is gone one SIGKILL to the group removes any child that outlived it: a
    gunicorn worker stuck in its shutdown would otherwise live on with PID 1 as
    its parent, holding its log and metrics files.
    """
    terminate([process])
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with contextlib.suppress(ProcessLookupError):  # the usual case: nothing is left
        os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def background_process(
    command: Sequence[str], log_path: Path, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` with stdout and stderr in ``log_path``; stop it on exit.

    In a session of its own, so a Ctrl-C in the terminal reaches only the
    Python process, which then stops the processes in order.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
    try:
        yield process
    finally:
        stop(process)


def stop_on_signal(signal_number: int, frame: FrameType | None) -> None:
    """A signal handler that unwinds as Ctrl-C does, through every ``finally``."""
    raise KeyboardInterrupt


@contextmanager
def stopping_on_sigterm() -> Iterator[None]:
    """SIGTERM (kill, a closing terminal) cleans up as Ctrl-C does, then the old handler is back.

    Without it Python would exit on the spot and leave gunicorn, nginx, redis and
    Java running.
    """
    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def on_stop_signals(handler: Callable[[int, FrameType | None], None]) -> None:
    """Install ``handler`` for every signal that asks this process to stop."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, handler)


def run_until_it_stops(command: Sequence[str]) -> int:
    """Run ``command``, pass it any stop signal, and return its exit status once it ends.

    The command stops itself: gunicorn's master lets its workers finish and then
    removes its Prometheus directory. subprocess.call would SIGKILL it on Ctrl-C
    (and on the SystemExit of a SIGTERM handler), leaving that directory behind.
    """
    process = subprocess.Popen(command)
    on_stop_signals(lambda signal_number, _: process.send_signal(signal_number))
    status = process.wait()
    return 128 - status if status < 0 else status  # killed by signal N: 128 + N, as shells say


# --- gunicorn's workers, and which one holds a connection ------------------------------


def worker_pids(master_pid: int) -> set[int]:
    """The gunicorn master's children, from /proc (each stat line names its parent)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid ...": the command may contain spaces, so split after ")".
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended while we looked
            continue
        if parent == master_pid:
            children.add(int(stat.parent.name))
    return children


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server side of a loopback TCP connection, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = (int(address.split(":")[1], 16) for address in fields[1:3])
        if (local_port, remote_port) == (server_port, client_port):
            return fields[9]
    return None


def accepting_worker(connection: HTTPConnection, port: int, workers: set[int]) -> int | None:
    """The worker whose file descriptors hold the server side of ``connection``.

    gunicorn's workers share one listening socket, so which one accepted a
    connection is only known to the kernel; a kept-alive connection then stays
    with that worker, which makes "every worker answered" checkable.
    """
    assert connection.sock is not None, "send a request first: the worker accepts it then"
    inode = _server_socket_inode(port, connection.sock.getsockname()[1])
    for pid in workers:
        with contextlib.suppress(OSError):  # the worker died meanwhile
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
    return None


class StoppedAfterTheBlock:
    """``with server:`` starts it and stops it when the block ends, however it ends.

    The base of the servers tests and scripts run for a block (DynamoDB Local, the
    partition proxy); each defines ``start()`` (which returns it, ready) and ``stop()``,
    and a block that raises still stops what it started.
    """

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
