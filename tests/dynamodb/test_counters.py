"""counters.py: inc/dec exact across threads and processes, never applied twice."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import multiprocessing
import threading
import time
from typing import Any

from cache_backends.dynamodb.backend import DynamoDBCache
from cache_backends.dynamodb.batch import MAX_BATCH_GET
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.dynamodb import CallLog, MakeCache


def test_inc_and_dec(cache: DynamoDBCache, calls: CallLog) -> None:
    assert cache.inc("n") == 1
    calls.clear()
    assert cache.inc("n", 5) == 6
    assert calls.operations() == ["UpdateItem"], "a live counter is one atomic UpdateItem"
    assert cache.dec("n", 2) == 4
    assert cache.get("n") == 4
    assert type(cache.get("n")) is int


def test_inc_continues_from_a_set_integer(cache: DynamoDBCache) -> None:
    cache.set("n", 10)
    assert cache.inc("n") == 11
    assert cache.get("n") == 11


def test_inc_refuses_a_non_integer_and_leaves_it(cache: DynamoDBCache, calls: CallLog) -> None:
    cache.set_many({"s": "text", "flag": True})
    calls.clear()
    assert cache.inc("s") is None
    assert len(calls.calls) == 2, "one failed ADD, one read: no retry loop"
    assert cache.inc("flag") is None, "a bool is not a counter"
    assert cache.get_many("s", "flag") == ["text", True]
    assert cache.inc("n", 0.5) is None  # type: ignore[arg-type]
    assert cache.get("n") is None


def test_a_planted_counter_is_rejected(cache: DynamoDBCache, raw_table: Any) -> None:
    """Only items inc() created carry the signed marker that makes a number a counter."""
    raw_table.put_item(Item={"cache_key": "test:planted", "counter": 7})
    assert cache.get("planted") is None
    assert cache.has("planted") is False


def test_inc_is_exact_across_threads(cache: DynamoDBCache) -> None:
    cache.set("n", 100)  # the first increments race to convert the set() value
    threads = [
        threading.Thread(target=lambda: [cache.inc("n") for _ in range(25)]) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("n") == 100 + 8 * 25


def _increment_in_child(cache: DynamoDBCache, times: int) -> None:
    for _ in range(times):
        assert cache.inc("shared") is not None
    # Pages go out on a thread pool the parent already started: a child needs its own.
    keys = [f"page{i}" for i in range(MAX_BATCH_GET * 2)]
    assert cache.get_many(*keys) == list(range(len(keys)))


def test_inc_is_exact_across_forked_processes(cache: DynamoDBCache) -> None:
    """The children inherit a backend that has already connected: fork-safety too."""
    assert cache.inc("shared") == 1
    cache.set_many({f"page{i}": i for i in range(MAX_BATCH_GET * 2)})
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_increment_in_child, args=(cache, 30)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert cache.get("shared") == 1 + 3 * 30


class LateAnswerProxy:
    """Forwards to DynamoDB Local, but answers the first call of chosen operations late.

    DynamoDB has applied the write by then; the client has timed out. That is
    the lost response a retry would turn into a second ADD.
    """

    def __init__(self, upstream_port: int, late_operations: set[str], delay: float) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
                upstream.request("POST", self.path, body, dict(self.headers.items()))
                answer = upstream.getresponse()
                data = answer.read()
                operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                if operation in proxy.late_operations:
                    proxy.late_operations.discard(operation)
                    time.sleep(proxy.delay)
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                # The late answer's client timed out and left, as the test intends.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

        self.late_operations = late_operations
        self.delay = delay
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_a_lost_response_never_applies_inc_twice(
    make_cache: MakeCache, dynamodb_local: DynamoDBLocal
) -> None:
    direct = make_cache(key_prefix="r:")
    direct.inc("n")
    proxy = LateAnswerProxy(dynamodb_local.port, {"UpdateItem"}, delay=0.6)
    try:
        late = make_cache(
            key_prefix="r:",
            endpoint_url=proxy.endpoint_url,
            create_table=False,
            read_timeout=0.3,
            max_retries=3,
            breaker_failures=0,
        )
        assert late.inc("n") is None, "the outcome is unknown: not reported as done"
        assert direct.get("n") == 2, "applied once, not once per retry"
    finally:
        proxy.server.shutdown()
