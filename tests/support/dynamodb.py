"""The DynamoDB backend's tests' helpers: a call-recording receiver, a Flask app on the backend.

The fixtures built from them (``make_cache``, ``cache``, ``calls``, ``raw_table``...)
are in tests/dynamodb/conftest.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask_caching import Cache

from cache_backends.dynamodb.backend import DynamoDBCache
from cache_backends.dynamodb.settings import CACHE_TYPE

#: ``make_cache(**options)``: a DynamoDBCache on the test's table (see conftest).
MakeCache = Callable[..., DynamoDBCache]


class CallLog:
    """A ``signals.dynamodb_call`` receiver that records every DynamoDB call backends make."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException | None]] = []
        self._lock = threading.Lock()

    def __call__(
        self, transport: object, *, operation: str, error: BaseException | None, **_: object
    ) -> None:
        with self._lock:
            self.calls.append((operation, error))

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]

    def clear(self) -> None:
        self.calls.clear()


def count_attempts(backend: Any, operation: str | None = None) -> list[str]:
    """Every HTTP attempt at ``operation`` (None: at any) from now on, by operation name
    (retries too: botocore's before-send)."""
    sent: list[str] = []
    event = "before-send.dynamodb" if operation is None else f"before-send.dynamodb.{operation}"
    for client in backend.strict.transport.clients():
        client.meta.events.register(
            event, lambda event_name, **_: sent.append(event_name.rsplit(".", 1)[-1])
        )
    return sent


def flask_cache(config: dict[str, Any]) -> tuple[Flask, Cache]:
    """An app whose Flask-Caching extension builds the backend from ``config``."""
    app = Flask(__name__)
    app.config.update(config)
    return app, Cache(app, config={"CACHE_TYPE": CACHE_TYPE, **config})
