"""The database's own change events, heard once per instance and shared by its workers.

On PostgreSQL the categories trigger (migration 0004) sends ``pg_notify`` on
``CATALOGUE_CHANNEL`` when a change commits, whoever made it: an API write on
any instance, a back-office tool, plain SQL. :class:`CatalogueListener` turns
that into two things:

- the reconciler is woken at once (``on_change``), instead of at its next
  interval, so the shared cache catches up within tens of milliseconds;
- the version the database was heard at is written to the instance's
  :class:`VersionBoard`, a few bytes in a file every worker maps, so each
  worker can refuse a near-cache copy older than it without a network call.

Connections are the scarce resource (docs/deploy.md's formula), so an instance
holds one listening connection, not one per worker: the workers share a
directory (``CATALOGUE_EVENTS_DIR``, Flask's instance folder by default) and
the one holding an exclusive ``flock`` on its lock file listens; the others try
again every ``ELECTION_RETRY_SECONDS``, so a listener that dies (its lock goes
with its process) is replaced. The connection stays outside the SQLAlchemy
pool, in autocommit: a pooled connection could be handed back mid-transaction.

A notification is a hint, never data. Any database client may ``NOTIFY`` on the
channel, with any payload up to 8000 bytes, so the payload is not read at all:
each burst of notifications costs one ``read_version()`` (the repository's
one-row query), and that is what is published. Notifications sent while the
listener is disconnected are lost, so every (re)connect is treated as a
change too; a lost connection is retried with capped, jittered backoff.
SQLite has no notifications: there the reconciler's interval is the bound.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from flask import Flask

from cache_backends import background
from ecommerce.categories import repository
from ecommerce.categories.models import CATALOGUE_CHANNEL
from ecommerce.extensions import db

logger = logging.getLogger(__name__)

#: SQLAlchemy's name for the one dialect with LISTEN/NOTIFY among those the app supports.
POSTGRESQL = "postgresql"
LOCK_FILE_NAME = "catalogue-listener.lock"
BOARD_FILE_NAME = "catalogue-version.board"
#: How often a worker that is not the instance's listener asks for the lock again:
#: the longest an instance goes unheard after its listener died.
ELECTION_RETRY_SECONDS = 5.0
#: How long one wait for notifications lasts before the loop checks for a stop.
NOTIFY_WAIT_SECONDS = 1.0
#: Reconnect backoff after a lost or refused connection (a database restart, a
#: fail-over): from the first delay, doubling to the cap, each drawn with full jitter
#: so an instance's listeners do not reconnect in step.
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 30.0
FULL_JITTER = 1.0

#: A listener that has not beaten for this long is taken for deaf: a few of its waits.
LISTENING_WITHIN_SECONDS = 3 * NOTIFY_WAIT_SECONDS


class VersionBoard:
    """The catalogue version last heard from the database, shared by one instance's processes.

    One writer (the listener) and any number of readers, each mapping the same
    file (``cache_backends.background.SharedVersion``): a read is a few hundred
    nanoseconds, cheap enough for every near-cache hit. ``None`` until a listener
    has published: there is then nothing to compare with. With the version, when the
    listener last showed it listens (:meth:`beat`).
    """

    def __init__(self, path: Path) -> None:
        self._shared = background.SharedVersion(path)

    def read(self) -> int | None:
        """The published version, or None if none is (or a write kept racing this read)."""
        board = self._shared.read()
        return None if board is None else board[0]

    def listening_since(self) -> float:
        """When (epoch seconds) the listener last showed it listens; 0.0 if it never did."""
        board = self._shared.read()
        return 0.0 if board is None else board[1]

    def publish(self, version: int) -> None:
        """Publish the database's version: down as well as up (a restored database)."""
        self._shared.write(version, time.time())

    def beat(self) -> None:
        """The listener still listens (nothing heard is nothing changed): said every wait."""
        version = self.read()
        if version is not None:
            self._shared.write(version, time.time())

    def close(self) -> None:
        self._shared.close()


class NotifyingConnection(Protocol):
    """What the listener needs of a psycopg 3 connection (autocommit)."""

    def execute(self, query: str) -> Any: ...
    def notifies(self, *, timeout: float | None = ..., stop_after: int | None = ...) -> Any: ...
    def close(self) -> None: ...


@dataclass(eq=False)
class CatalogueListener:
    """One instance's LISTEN on the catalogue channel; see the module docstring.

    :param connect: opens a new autocommit connection (outside any pool).
    :param read_version: the database's catalogue version, read from the table.
    :param on_change: called after each (re)connect and each burst of notifications,
        once the version is published: the reconciler's wake-up.
    :param directory: shared by the instance's workers: the lock and the board.
    :param channel: the channel the trigger notifies.
    :param election_retry_seconds: how often a process that is not the listener asks again.
    """

    connect: Callable[[], NotifyingConnection]
    read_version: Callable[[], int]
    on_change: Callable[[], None]
    directory: Path
    channel: str
    election_retry_seconds: float = ELECTION_RETRY_SECONDS

    def __post_init__(self) -> None:
        self.board = VersionBoard(self.directory / BOARD_FILE_NAME)
        self._lock = background.InstanceLock(self.directory / LOCK_FILE_NAME)
        self._worker = background.BackgroundWorker("catalogue-listener", self._elect_and_listen)
        #: Set while this process holds the lock and a listening connection (tests).
        self.listening = threading.Event()
        #: Called before each reconnect attempt, with the attempt's number: a seam for
        #: tests that must act while the listener is disconnected.
        self.before_reconnect: Callable[[int], None] = lambda attempt: None

    def latest(self) -> int | None:
        """The version last heard (a region's version source): a read of the board."""
        return self.board.read()

    def live(self) -> bool:
        """Whether the instance's listener (in whichever process) listens now: then every
        committed change is heard within a second, and near copies may live longer."""
        return time.time() - self.board.listening_since() < LISTENING_WITHIN_SECONDS

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = NOTIFY_WAIT_SECONDS * 2) -> None:
        """Stop listening; the lock and the connection are released by the thread."""
        self._worker.stop(timeout)

    def _elect_and_listen(self, woken: bool) -> float:
        """Listen while this process holds the instance's lock; else ask again later."""
        if self._lock.acquire():
            try:
                self._listen_until_stopped()
            finally:
                self._lock.release()
        return self.election_retry_seconds

    def _listen_until_stopped(self) -> None:
        attempt = 0
        stopping = self._worker.stopping
        while not stopping.is_set():
            if attempt:
                self.before_reconnect(attempt)
                delay = background.backoff(
                    attempt - 1,
                    first=RECONNECT_FIRST_SECONDS,
                    cap=RECONNECT_MAX_SECONDS,
                    jitter=FULL_JITTER,
                )
                if stopping.wait(delay):
                    return
            try:
                self._listen()
                return  # stopped
            except Exception:  # a lost connection, a refused one, a failing read
                logger.warning(
                    "catalogue listener lost its connection; reconnecting", exc_info=True
                )
                attempt = 1 if self.listening.is_set() else attempt + 1
            finally:
                self.listening.clear()

    def _listen(self) -> None:
        connection = self.connect()
        try:
            connection.execute(f'LISTEN "{self.channel}"')
            # Whatever was sent while this process was not listening is lost: a
            # (re)connect is itself a change to reconcile.
            self._heard()
            self.listening.set()
            while not self._worker.stopping.is_set():
                burst = list(connection.notifies(timeout=NOTIFY_WAIT_SECONDS, stop_after=1))
                if burst:
                    list(connection.notifies(timeout=0))  # the rest of the burst: one read
                    self._heard()
                else:
                    self.board.beat()
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def _heard(self) -> None:
        self.board.publish(self.read_version())
        self.on_change()


def listener_for(app: Flask, on_change: Callable[[], None]) -> CatalogueListener | None:
    """The app's listener, or None where the database sends no notifications (SQLite).

    It connects with the app's own database URL, through SQLAlchemy's dialect so
    that every option of the URL (host, port, ``sslmode``...) applies, but on a
    connection of its own.
    """
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != POSTGRESQL:
        return None
    arguments, options = engine.dialect.create_connect_args(engine.url)

    def connect() -> NotifyingConnection:
        import psycopg  # the PostgreSQL driver: installed where PostgreSQL is used

        return psycopg.connect(*arguments, **options, autocommit=True)

    def read_version() -> int:
        with app.app_context():
            return repository.current_catalogue_version()

    directory = Path(app.config["CATALOGUE_EVENTS_DIR"] or app.instance_path)
    try:
        return CatalogueListener(connect, read_version, on_change, directory, CATALOGUE_CHANNEL)
    except OSError:  # a read-only instance folder: run, with the reconciler as the bound
        app.logger.warning(
            "no PostgreSQL change listener: CATALOGUE_EVENTS_DIR %s is not writable; "
            "changes are served within CATEGORIES_CACHE_RECONCILE_SECONDS instead",
            directory,
            exc_info=True,
        )
        return None
