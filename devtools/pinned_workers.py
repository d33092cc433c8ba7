"""One kept-alive connection pinned to each worker of a gunicorn instance.

gunicorn's workers share one listening socket, so which worker answers a new
connection is the kernel's choice; a kept-alive connection stays with the worker
that accepted it (found through /proc: :func:`devtools.processes.accepting_worker`).
Pinning one to each worker lets a test ask *every* worker what it serves, which is
how the coherence scenarios and the fleet tests see a stale worker that a
load-balanced client would only meet by chance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from typing import Any

from devtools.credentials import DEV_ADMIN_AUTHORIZATION
from devtools.fleet import Instance
from devtools.processes import accepting_worker, worker_pids

#: Longer than any write the app makes (retries included), so a slow answer is measured,
#: not cut off: the "before" POSTs of the coherence table take up to ~4 s.
HTTP_TIMEOUT_SECONDS = 15.0
#: How long pinning keeps trying to reach every worker: a worker accepts only once it has
#: imported the app, seconds after its pid appears when the machine is busy, and until
#: then its siblings accept every connection.
PINNING_TIMEOUT_SECONDS = 30.0
#: Between two connections that reached a worker already pinned.
PINNING_PAUSE_SECONDS = 0.05
#: Per round of GETs while a worker has no connection yet (a replacement booting).
REPIN_ATTEMPTS_PER_ROUND = 3


@dataclass(frozen=True)
class Answer:
    """One GET /categories as a worker answered it."""

    status: int
    cache: str
    categories: list[dict[str, Any]]


def request(
    connection: HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    extra_headers: Mapping[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One request on a kept-alive connection: status, JSON body (or None), headers.

    ``extra_headers``: e.g. an ``X-Request-Id`` to find the request in the app's log.
    """
    headers = {"Content-Type": "application/json", **DEV_ADMIN_AUTHORIZATION} if body else {}
    headers |= extra_headers or {}
    connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = connection.getresponse()
    raw = response.read()
    return response.status, json.loads(raw) if raw else None, dict(response.headers)


def get_list(connection: HTTPConnection) -> Answer:
    status, body, headers = request(connection, "GET", "/categories")
    return Answer(status, headers.get("X-Cache", "-"), body if status == 200 else [])


class PinnedWorkers:
    """One kept-alive connection to each worker of a gunicorn instance.

    A worker that dies loses its connection; its replacement gets one as soon
    as it accepts (a booting worker imports the app first: seconds).
    """

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.connections: dict[int, HTTPConnection] = {}

    def _connect_once(self) -> None:
        """Open one connection; keep it if it reached a worker without one."""
        connection = HTTPConnection("127.0.0.1", self.instance.port, timeout=HTTP_TIMEOUT_SECONDS)
        try:
            get_list(connection)
            pid = accepting_worker(
                connection, self.instance.port, worker_pids(self.instance.process.pid)
            )
        except (OSError, HTTPException):
            connection.close()
            return
        if pid is None or pid in self.connections:
            connection.close()
        else:
            self.connections[pid] = connection

    def pin_all(self) -> None:
        """Until every current worker has a connection (they are all up: at start)."""
        deadline = time.monotonic() + PINNING_TIMEOUT_SECONDS
        while not set(self.connections) >= worker_pids(self.instance.process.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"in {PINNING_TIMEOUT_SECONDS:.0f} s, connections reached only "
                    f"{set(self.connections)} of {worker_pids(self.instance.process.pid)}"
                )
            pinned = len(self.connections)
            self._connect_once()
            if len(self.connections) == pinned:
                time.sleep(PINNING_PAUSE_SECONDS)

    def repin(self) -> None:
        """Drop connections to dead workers; try a few times to reach new ones."""
        alive = worker_pids(self.instance.process.pid)
        for pid in set(self.connections) - alive:
            self.connections.pop(pid).close()
        for _ in range(REPIN_ATTEMPTS_PER_ROUND):
            if set(self.connections) >= alive:
                return
            self._connect_once()

    def get_everywhere(self) -> dict[int, Answer]:
        """GET /categories once from each worker that answers."""
        answers = {}
        for pid, connection in list(self.connections.items()):
            try:
                answers[pid] = get_list(connection)
            except (OSError, HTTPException):  # the worker died under it
                connection.close()
                del self.connections[pid]
        return answers

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()
