"""Clients that trickle their request bodies must not take an instance down.

Against plain ``gunicorn wsgi:app`` with the repository's gunicorn.conf.py: 30
connections send their headers and then a byte of body now and then, as a
laptop on the internet could; meanwhile /healthz and GET /categories must keep
answering within a second.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from devtools.fleet import gunicorn_instance, prepare, wait_until_healthy

SLOW_CLIENTS = 30
DECLARED_BODY_BYTES = 10_000
TRICKLE_INTERVAL_SECONDS = 0.5
PROBE_SECONDS = 4.0
PROBE_INTERVAL_SECONDS = 0.2
ANSWER_BUDGET_SECONDS = 1.0

pytestmark = pytest.mark.slow


@contextmanager
def trickling_clients(port: int, count: int) -> Iterator[None]:
    """``count`` connections that send headers, then one body byte per interval."""
    stop = threading.Event()
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    head = (
        "POST /categories HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {DECLARED_BODY_BYTES}\r\n\r\n"
    ).encode()

    def trickle() -> None:
        for sock in sockets:
            sock.sendall(head)
        while not stop.wait(TRICKLE_INTERVAL_SECONDS):
            for sock in sockets:
                with contextlib.suppress(OSError):  # the server gave up on it: fine
                    sock.sendall(b" ")

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join()
        for sock in sockets:
            sock.close()


def test_thirty_slow_body_clients_do_not_stop_health_checks_or_reads(tmp_path: Path) -> None:
    settings = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'slow.sqlite'}"}
    prepare(settings, quiet=True)
    with ExitStack() as stack:
        instance = stack.enter_context(gunicorn_instance("slow", settings, tmp_path))
        wait_until_healthy(instance.url, instance.process, instance.log_path)
        stack.enter_context(trickling_clients(instance.port, SLOW_CLIENTS))
        time.sleep(TRICKLE_INTERVAL_SECONDS)  # every slow client is connected and waiting

        durations = []
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            for path in ("/healthz", "/categories"):
                started = time.perf_counter()
                response = requests.get(instance.url + path, timeout=ANSWER_BUDGET_SECONDS)
                durations.append(time.perf_counter() - started)
                assert response.status_code == 200
            time.sleep(PROBE_INTERVAL_SECONDS)

    assert max(durations) < ANSWER_BUDGET_SECONDS
