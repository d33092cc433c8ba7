"""ecommerce/categories/changes.py: the instance's board, and one LISTEN per instance on PostgreSQL.

The listener runs against the session's real PostgreSQL; notifications are sent
with plain NOTIFY from another connection (the trigger's own are tested in
tests/integration/test_change_capture.py). Interleavings are forced through the
listener's events and its ``before_reconnect`` seam, never by sleeping.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from devtools.postgresql import LocalPostgreSQL
from ecommerce.categories import changes
from ecommerce.categories.cache_policy import categories_region
from ecommerce.categories.changes import CatalogueListener, VersionBoard
from ecommerce.categories.models import CATALOGUE_CHANNEL
from tests.support.app import SEED_CATEGORIES, TOYS, get_categories
from tests.support.races import PausedLoad

#: Longer than any step here takes on a busy 2-core machine; reached only on failure.
WAIT_SECONDS = 10.0
#: The largest payload PostgreSQL's NOTIFY accepts is 7999 bytes.
LARGEST_PAYLOAD = 7999
#: The listening backends of this test's database (the server is the session's).
LISTENERS_HERE = "query LIKE 'LISTEN%%' AND datname = current_database()"


def test_a_fresh_board_has_nothing_to_say(tmp_path: Path) -> None:
    assert VersionBoard(tmp_path / "board").read() is None


def test_every_process_mapping_the_board_reads_what_the_listener_published(
    tmp_path: Path,
) -> None:
    writer, reader = VersionBoard(tmp_path / "board"), VersionBoard(tmp_path / "board")

    writer.publish(41)
    assert reader.read() == 41
    writer.publish(3)  # a database restored to an older version: the board follows it down
    assert reader.read() == 3


def test_the_board_says_when_the_listener_last_showed_it_listens(tmp_path: Path) -> None:
    writer, reader = VersionBoard(tmp_path / "board"), VersionBoard(tmp_path / "board")
    assert reader.listening_since() == 0.0
    writer.beat()  # nothing published yet: nothing to vouch for
    assert reader.listening_since() == 0.0

    before = time.time()
    writer.publish(41)
    published_at = reader.listening_since()
    assert published_at >= before
    writer.beat()
    assert reader.read() == 41 and reader.listening_since() >= published_at


class Heard:
    """What a listener's callbacks saw: each version read and each wake-up."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.version = 0
        self.changes = 0
        self.changed = threading.Condition()

    def read_version(self) -> int:
        return self.version

    def on_change(self) -> None:
        with self.changed:
            self.changes += 1
            self.changed.notify_all()

    def wait_for_changes(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.changes >= count, WAIT_SECONDS), (
                f"{self.changes} wake-ups, expected {count}"
            )

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, autocommit=True)

    def notify(self, payload: str = "") -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            connection.execute("SELECT pg_notify(%s, %s)", (CATALOGUE_CHANNEL, payload))


@pytest.fixture
def heard(postgresql: LocalPostgreSQL) -> Heard:
    url = postgresql.create_database()
    return Heard(url.replace("postgresql+psycopg://", "postgresql://"))


def listener_for(heard: Heard, directory: Path, **options: float) -> CatalogueListener:
    return CatalogueListener(
        heard.connect, heard.read_version, heard.on_change, directory, CATALOGUE_CHANNEL, **options
    )


@pytest.fixture
def listening(heard: Heard, tmp_path: Path) -> Iterator[CatalogueListener]:
    listener = listener_for(heard, tmp_path)
    listener.start()
    assert listener.listening.wait(WAIT_SECONDS)
    yield listener
    listener.stop()


def test_a_connect_is_a_change_and_a_notification_wakes_the_reconciler_with_the_tables_version(
    heard: Heard, listening: CatalogueListener
) -> None:
    heard.wait_for_changes(1)  # on connect: what was sent before it is lost
    heard.version = 7

    heard.notify("7")

    heard.wait_for_changes(2)
    assert listening.board.read() == 7


@pytest.mark.parametrize("payload", ["999999999", "not a number", "x" * LARGEST_PAYLOAD])
def test_a_forged_payload_is_never_read_as_data(
    heard: Heard, listening: CatalogueListener, payload: str
) -> None:
    heard.wait_for_changes(1)
    heard.version = 5

    heard.notify(payload)

    heard.wait_for_changes(2)
    assert listening.board.read() == 5  # the table's version, whatever the payload said


def test_an_instance_holds_one_listening_connection_and_a_dead_listeners_place_is_taken(
    heard: Heard, tmp_path: Path
) -> None:
    first = listener_for(heard, tmp_path, election_retry_seconds=0.05)
    second = listener_for(heard, tmp_path, election_retry_seconds=0.05)
    first.start()
    assert first.listening.wait(WAIT_SECONDS)
    second.start()
    try:
        assert not second.listening.wait(0.3)  # several election rounds, all lost
        assert listening_backends(heard) == 1

        first.stop()  # its lock goes with it, as with a worker that exits

        assert second.listening.wait(WAIT_SECONDS)
        assert listening_backends(heard) == 1
    finally:
        first.stop()
        second.stop()


def test_a_lost_connection_is_reconnected_and_what_it_missed_is_reconciled(
    heard: Heard, listening: CatalogueListener
) -> None:
    """A change committed while the listener is away sends a notification nobody hears."""
    heard.wait_for_changes(1)
    resume = disconnect_and_hold(heard, listening)
    heard.version = 9
    heard.notify("9")  # lost: nobody listens
    resume.set()

    heard.wait_for_changes(2)  # the reconnect itself
    assert listening.listening.wait(WAIT_SECONDS)
    assert listening.board.read() == 9


def test_an_instance_is_live_while_its_listener_listens_and_deaf_soon_after_it_stops(
    heard: Heard, listening: CatalogueListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its workers keep near copies longer only while it is live: a disconnected listener
    stops beating (it beats after each quiet wait of a second), and its instance goes back
    to the near-cache's TTL within ``LISTENING_WITHIN_SECONDS`` (shortened, still longer
    than a beat, so that a quiet connection stays live)."""
    monkeypatch.setattr(changes, "LISTENING_WITHIN_SECONDS", 1.5)
    heard.wait_for_changes(1)
    another_worker = listener_for(heard, listening.directory)  # never started: reads the board
    assert another_worker.live()
    connected_at = listening.board.listening_since()
    wait_until(lambda: listening.board.listening_since() > connected_at)  # a quiet wait's beat
    assert another_worker.live()

    resume = disconnect_and_hold(heard, listening)
    wait_until(lambda: not another_worker.live())
    resume.set()
    heard.wait_for_changes(2)
    assert another_worker.live()


def disconnect_and_hold(heard: Heard, listening: CatalogueListener) -> threading.Event:
    """End the listener's connection and hold its reconnect until the event it returns is set."""
    disconnected, resume = threading.Event(), threading.Event()

    def hold_the_reconnect(attempt: int) -> None:
        disconnected.set()
        assert resume.wait(WAIT_SECONDS)

    listening.before_reconnect = hold_the_reconnect
    with psycopg.connect(heard.conninfo, autocommit=True) as admin:
        admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {LISTENERS_HERE}"
        )
    assert disconnected.wait(WAIT_SECONDS)
    return resume


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def listening_backends(heard: Heard) -> int:
    with psycopg.connect(heard.conninfo, autocommit=True) as connection:
        row = connection.execute(
            f"SELECT count(*) FROM pg_stat_activity WHERE {LISTENERS_HERE}"
        ).fetchone()
    assert row is not None
    return int(row[0])


# -- in the app: a change made anywhere is served everywhere within tens of milliseconds --

ON_POSTGRESQL = pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
#: The issue's bound for a plain-SQL change on PostgreSQL.
PLAIN_SQL_BOUND_SECONDS = 1.0
POLL_SECONDS = 0.01
#: Far longer than the test: only the heard version can end these near copies.
LONG_NEAR_TTL_SECONDS = 600


def insert_with_plain_sql(database_uri: str, name: str) -> None:
    """A back-office tool's INSERT: no API, no cache update; the trigger notifies."""
    conninfo = database_uri.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO categories (name, name_key) VALUES (%s, %s)", (name, name.casefold())
        )


@contextlib.contextmanager
def listening_app(app: Flask) -> Iterator[CatalogueListener]:
    """The app's listener, started as a gunicorn worker's first request starts it."""
    listener = categories_region(app).source
    assert listener is not None, "PostgreSQL has notifications: the app must listen"
    categories_region(app).reconciler.start()
    listener.start()
    try:
        assert listener.listening.wait(WAIT_SECONDS)
        yield listener
    finally:
        listener.stop()
        categories_region(app).reconciler.stop()


def names(client: FlaskClient) -> set[str]:
    categories, _ = get_categories(client)
    return {category["name"] for category in categories}


def seconds_until_served(clients: list[FlaskClient], name: str) -> float:
    started = time.monotonic()
    while not all(name in names(client) for client in clients):
        assert time.monotonic() - started < WAIT_SECONDS, f"{name} never served everywhere"
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started


@ON_POSTGRESQL
def test_a_plain_sql_insert_is_served_by_every_process_within_a_second(
    make_app: Callable[..., Flask],
    dynamodb_cache_config: dict[str, Any],
    database_uri: str,
) -> None:
    """Two processes of one instance, each with a near copy kept for ten minutes: only
    one listens, and the other drops its copy because the board says a newer list exists."""
    settings = {**dynamodb_cache_config, "CACHE_NEAR_TTL": LONG_NEAR_TTL_SECONDS}
    listening, other = make_app(**settings), make_app(init_db=False, **settings)
    clients = [listening.test_client(), other.test_client()]
    for client in clients:
        while get_categories(client) != (SEED_CATEGORIES, "HIT"):
            pass  # init-db left a tombstone: the first GET loads
    with listening_app(listening):
        insert_with_plain_sql(database_uri, TOYS["name"])

        assert seconds_until_served(clients, TOYS["name"]) < PLAIN_SQL_BOUND_SECONDS
        assert all(get_categories(client)[1] == "HIT" for client in clients)
    assert (
        categories_region(other).source is not None
        and not categories_region(other).source.listening.is_set()
    )


@ON_POSTGRESQL
def test_a_notification_arriving_during_a_load_never_lets_the_older_list_be_served(
    make_app: Callable[..., Flask],
    database_uri: str,
    paused_load: PausedLoad,
    in_background: Callable[..., Future[Any]],
) -> None:
    """A GET's load has read version N and pauses; a plain-SQL insert commits N+1 and is
    heard; the resumed load's list is the GET's answer (it began before), never cached."""
    app = make_app()
    with listening_app(app) as listener:
        paused_load.arm()
        early = in_background(get_categories, app.test_client())
        paused_load.wait_until_paused()
        heard_before = listener.board.read()

        insert_with_plain_sql(database_uri, TOYS["name"])
        deadline = time.monotonic() + WAIT_SECONDS
        while listener.board.read() == heard_before:
            assert time.monotonic() < deadline, "the insert was never heard"
            time.sleep(POLL_SECONDS)
        paused_load.resume.set()

        assert early.result(WAIT_SECONDS) == (SEED_CATEGORIES, "MISS")
        assert get_categories(app.test_client()) == ([*SEED_CATEGORIES, TOYS], "MISS")
        assert get_categories(app.test_client()) == ([*SEED_CATEGORIES, TOYS], "HIT")


def test_sqlite_has_no_listener(make_app: Callable[..., Flask]) -> None:
    """No notifications there: the reconciler's interval is the bound."""
    assert categories_region(make_app()).source is None


@ON_POSTGRESQL
def test_an_unwritable_events_folder_costs_the_listener_not_the_start_up(
    make_app: Callable[..., Flask], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As under systemd's ProtectSystem=strict with the instance folder in the read-only venv."""
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")

    app = make_app(CATALOGUE_EVENTS_DIR=str(not_a_folder / "events"))

    assert categories_region(app).source is None
    assert "CATALOGUE_EVENTS_DIR" in caplog.text
    assert get_categories(app.test_client())[0] == SEED_CATEGORIES
