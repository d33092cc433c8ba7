"""An HTTP proxy in front of DynamoDB Local: counts every call, and throttles on demand.

What DynamoDB bills and throttles is per item: an operation on a key, and the capacity it
consumed. DynamoDB Local reports consumed capacity when a call asks for it
(``ReturnConsumedCapacity``), so the proxy asks on every data call it forwards and
records what came back (a write its condition refused, which DynamoDB bills and DynamoDB
Local reports nothing for, as one unit); and DynamoDB Local never throttles, so for the
calls a rule picks the proxy answers as DynamoDB does for a hot key: HTTP 400,
``ProvisionedThroughputExceededException``, nothing executed::

    with DynamoDBLocal() as ddb, DynamoDBProxy(ddb.endpoint_url) as proxy:
        settings = dynamodb_settings(proxy.endpoint_url)   # the app talks to the proxy
        with proxy.throttling("GetItem", key="ecommerce:categories:all", share=0.7):
            ...
        proxy.calls()                                      # [Call(operation, key, ...)]

Unlike ``devtools/partition.py`` (TCP, bytes untouched) it reads each request: the
operation from ``X-Amz-Target``, the key from the JSON body. DynamoDB Local does not
check request signatures, so adding ``ReturnConsumedCapacity`` to a signed body is
accepted; the response goes back as DynamoDB Local sent it (its CRC32 header included).
Standard library only; meant for tests and measurements.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

from devtools.processes import StoppedAfterTheBlock

#: The operations that accept ``ReturnConsumedCapacity`` (the others are forwarded as sent).
DATA_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchGetItem",
        "BatchWriteItem",
        "Query",
        "Scan",
    }
)
CONDITION_FAILED = "ConditionalCheckFailedException"
THROTTLED_TYPE = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
#: The partition key's attribute in the backend's table (``cache_backends.models``).
KEY_ATTRIBUTE = "cache_key"
UPSTREAM_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Call:
    """One call the proxy saw: what DynamoDB would bill, or that it throttled."""

    operation: str
    key: str | None  # None: a call on many keys (batches) or on none (DescribeTable)
    capacity_units: float
    throttled: bool


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """Throttle ``share`` of the calls of ``operation`` (on ``key``, if given)."""

    operation: str
    key: str | None
    share: float

    def picks(self, operation: str, key: str | None, draw: float) -> bool:
        matches = operation == self.operation and (self.key is None or key == self.key)
        return matches and draw < self.share


def key_of(operation: str, body: dict[str, Any]) -> str | None:
    """The partition key a single-item call names, None for any other call."""
    item = body.get("Item") if operation == "PutItem" else body.get("Key")
    if not isinstance(item, dict):
        return None
    value = item.get(KEY_ATTRIBUTE, {})
    return value.get("S") if isinstance(value, dict) else None


def capacity_of(response: dict[str, Any]) -> float:
    """Capacity units a response reports (summed over tables for batches)."""
    consumed = response.get("ConsumedCapacity")
    entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
    return float(sum(entry.get("CapacityUnits", 0.0) for entry in entries))


def billed_units(status: int, answer: dict[str, Any]) -> float:
    """What DynamoDB bills for a call answered ``status`` with ``answer``.

    A write refused by its condition is billed (one unit for a small item: what the
    lease and the fence are), but DynamoDB Local's error answer reports no capacity.
    """
    if status == 200:
        return capacity_of(answer)
    if str(answer.get("__type", "")).endswith(CONDITION_FAILED):
        return 1.0
    return 0.0


class DynamoDBProxy(StoppedAfterTheBlock):
    """See the module docstring. ``seed`` makes the throttled share reproducible."""

    def __init__(self, upstream_url: str, *, port: int = 0, seed: int = 0) -> None:
        upstream = urlsplit(upstream_url)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._rules: list[ThrottleRule] = []
        self._random = random.Random(seed)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dynamodb-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self) -> list[Call]:
        """Every call seen so far, in order."""
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    @contextmanager
    def throttling(
        self, operation: str, *, key: str | None = None, share: float = 1.0
    ) -> Iterator[None]:
        """Throttle ``share`` of the calls of ``operation`` (on ``key``) inside the block."""
        rule = ThrottleRule(operation, key, share)
        with self._lock:
            self._rules.append(rule)
        try:
            yield
        finally:
            with self._lock:
                self._rules.remove(rule)

    # -- the server's side ------------------------------------------------------------

    def _throttles(self, operation: str, key: str | None) -> bool:
        with self._lock:
            draw = self._random.random()
            return any(rule.picks(operation, key, draw) for rule in self._rules)

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        connection = http.client.HTTPConnection(*self._upstream, timeout=UPSTREAM_TIMEOUT_SECONDS)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                request = json.loads(body or b"{}")
                key = key_of(operation, request)
                if proxy._throttles(operation, key):
                    proxy._record(Call(operation, key, 0.0, throttled=True))
                    self._answer(400, [], json.dumps(_throttled_answer()).encode())
                    return
                if operation in DATA_OPERATIONS and "ReturnConsumedCapacity" not in request:
                    request["ReturnConsumedCapacity"] = "TOTAL"
                    body = json.dumps(request).encode()
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in {"content-length", "host", "connection"}
                }
                headers["Content-Length"] = str(len(body))
                status, response_headers, answer = proxy._forward("POST", self.path, headers, body)
                units = billed_units(status, json.loads(answer or b"{}"))
                proxy._record(Call(operation, key, units, throttled=False))
                self._answer(status, response_headers, answer)

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                sent = {"content-length", "connection", "transfer-encoding", "date", "server"}
                for name, value in headers:
                    if name.lower() not in sent:
                        self.send_header(name, value)
                if not headers:
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # A client that gave up (its own timeout) has nobody left to answer.
                with contextlib.suppress(ConnectionError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a test's output is not the place for an access log

        return Handler


def _throttled_answer() -> dict[str, str]:
    return {
        "__type": THROTTLED_TYPE,
        "message": "The level of configured provisioned throughput for the table was exceeded "
        "(injected by devtools.dynamodb_proxy)",
    }
