"""ecommerce/observability.py and metrics.py: request ids, JSON log lines, ProxyFix, /metrics.

Log lines are read from the real stdout handler (capsys), metrics from the real
``GET /metrics`` text. Counters are process-wide, so tests compare before/after.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from flask import Flask
from flask.testing import FlaskClient

from cache_backends.dynamodb.entries import BAD_SIGNATURE
from cache_backends.dynamodb.parts import MISSING, PART_KEY_MARKER
from devtools.dynamodb_local import DynamoDBLocal
from devtools.ports import free_port
from ecommerce import metrics, observability, request_observation
from ecommerce.extensions import cache
from tests.support.app import post_category
from tests.support.logs import json_log_lines, metric_value

ACCESS_LOGGER = "ecommerce.access"
#: In the order the line lays them out: the format's fields, then the request's.
JSON_LINE_KEYS = (
    "time",
    "level",
    "logger",
    "request_id",
    "message",
    "method",
    "path",
    "status",
    "duration_ms",
    "remote_addr",
    "cache",
)
GENERATED_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
ISO_UTC_MILLISECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
CLIENT_ADDRESS = "203.0.113.7"  # TEST-NET-3: documentation addresses
PROXY_ADDRESS = "198.51.100.2"
#: Past DynamoDB's 400 KB item: stored as a manifest and parts.
LARGER_THAN_AN_ITEM = 600_000


# --- fixtures ------------------------------------------------------------------------


def scrape(client: FlaskClient, name: str, **labels: str) -> float:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return metric_value(response.get_data(as_text=True), name, **labels)


def access_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [
        line for line in json_log_lines(capsys.readouterr().out) if line["logger"] == ACCESS_LOGGER
    ]


def one_request_logged(
    client: FlaskClient,
    capsys: pytest.CaptureFixture[str],
    path: str = "/categories",
    **kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
    """Send one GET; return the response and its single access log line."""
    capsys.readouterr()  # drop what set-up wrote
    response = client.get(path, **kwargs)
    (line,) = access_lines(capsys)
    return response, line


# --- request ids ---------------------------------------------------------------------


def test_an_incoming_request_id_is_kept_returned_and_logged(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response, line = one_request_logged(client, capsys, headers={"X-Request-ID": "from-the-alb-42"})

    assert response.headers["X-Request-ID"] == "from-the-alb-42"
    assert line["request_id"] == "from-the-alb-42"


def test_without_one_a_request_id_is_generated_per_request(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    first, first_line = one_request_logged(client, capsys)
    second, _ = one_request_logged(client, capsys)

    assert GENERATED_REQUEST_ID.fullmatch(first.headers["X-Request-ID"])
    assert first_line["request_id"] == first.headers["X-Request-ID"]
    assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]


@pytest.mark.parametrize("bad_id", ["x" * 201, "caf\u00e9", "tab\there", ""])
def test_an_unusable_request_id_is_replaced(
    client: FlaskClient, capsys: pytest.CaptureFixture[str], bad_id: str
) -> None:
    """Echoed into a header and every log line: too long or unprintable ones are not."""
    response, line = one_request_logged(client, capsys, headers={"X-Request-ID": bad_id})

    assert GENERATED_REQUEST_ID.fullmatch(response.headers["X-Request-ID"])
    assert line["request_id"] == response.headers["X-Request-ID"]


def test_application_logs_carry_the_request_id_in_the_same_json_shape(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    """The loader's warning about a failing backend names the request it hurt."""
    app = make_app(CACHE_TYPE="tests.support.caches.RaisingCache")
    capsys.readouterr()

    app.test_client().get("/categories", headers={"X-Request-ID": "trace-me"})

    lines = json_log_lines(capsys.readouterr().out)
    warnings = [line for line in lines if line["logger"] == "cache_backends.loader"]
    assert warnings, lines
    assert {line["request_id"] for line in lines} == {"trace-me"}
    assert warnings[0]["level"] == "WARNING"
    assert "ConnectionError" in warnings[0]["exc_info"]  # the traceback stays inside the JSON
    access = [line for line in lines if line["logger"] == "ecommerce.access"]
    assert access[0]["cache"] == "ERROR", "any backend's failure, not only DynamoDB's"


# --- the access line -----------------------------------------------------------------


def test_one_json_line_per_request_with_every_field(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    client.get("/categories")
    client.get("/categories")
    client.get("/no-such-page")

    miss, hit, not_found = access_lines(capsys)
    assert set(miss) == set(JSON_LINE_KEYS)
    assert ISO_UTC_MILLISECONDS.fullmatch(miss["time"])
    assert (miss["level"], miss["method"], miss["path"], miss["status"]) == (
        "INFO",
        "GET",
        "/categories",
        200,
    )
    assert isinstance(miss["duration_ms"], float)
    assert miss["duration_ms"] >= 0
    assert miss["remote_addr"] == "127.0.0.1"
    assert (miss["cache"], hit["cache"], not_found["cache"]) == ("MISS", "HIT", "-")
    assert not_found["status"] == 404


def test_the_access_line_keeps_its_field_order(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """The format's fields, then the request's, as the line has always been laid out:
    a log pipeline reading it by position (or a person by eye) finds each in its place."""
    _, line = one_request_logged(client, capsys, headers={"X-Amzn-Trace-Id": ALB_TRACE_ID})

    assert list(line) == [*JSON_LINE_KEYS, "trace_id"]


def test_no_query_string_token_or_authorization_header_is_logged(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    admin_token = "admin-token-that-must-stay-secret"
    app = make_app(ADMIN_TOKEN=admin_token)
    client = app.test_client()
    capsys.readouterr()

    client.get("/categories?api_key=query-secret")
    client.post(
        "/categories",
        json={"name": "Toys"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    client.post("/categories", json={"name": "Games"}, headers={"Authorization": "Bearer wrong"})

    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "query-secret" not in output
    assert admin_token not in output
    assert "Bearer" not in output
    assert [line["status"] for line in json_log_lines(captured.out)] == [200, 201, 401]


def test_text_format_for_people(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_app(LOG_FORMAT="text").test_client()
    capsys.readouterr()

    client.get("/categories", headers={"X-Request-ID": "readable"})

    (line,) = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        r"\S+ INFO ecommerce\.access \[readable\] GET /categories 200 \d+\.\dms cache=MISS", line
    )


def test_log_level_warning_silences_the_access_lines(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_app(LOG_LEVEL="WARNING").test_client()
    capsys.readouterr()

    client.get("/categories")

    assert capsys.readouterr().out == ""


@contextmanager
def console_alone() -> Iterator[None]:
    """The root logger's other handlers (pytest's log capture, which it adds once the
    test runs) set aside: the app's console handler alone, as under gunicorn."""
    root = logging.getLogger()
    others = [handler for handler in root.handlers if handler is not _console_handler()]
    for handler in others:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in others:
            root.addHandler(handler)


def _console_handler() -> logging.Handler:
    (console,) = [h for h in logging.getLogger().handlers if type(h).__name__ == "_ConsoleHandler"]
    return console


def _comparable(line: dict[str, Any]) -> dict[str, Any]:
    """``line`` without what differs between two requests (time and duration)."""
    kept = {key: value for key, value in line.items() if key not in {"time", "duration_ms"}}
    kept["message"] = re.sub(r" [0-9.]+ms ", " <duration> ", line["message"])
    return kept


@pytest.mark.parametrize(
    "path", ["/categories", "/categories/caf%C3%A9%22%5C"]
)  # a hit; a 404 whose path needs JSON escapes
def test_the_line_written_straight_to_the_console_is_the_one_logging_writes(
    client: FlaskClient, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    access = logging.getLogger(ACCESS_LOGGER)
    headers = {"X-Request-ID": "one-id", "X-Amzn-Trace-Id": ALB_TRACE_ID}
    client.get(path)  # the cache is warm for both lines
    with console_alone():
        assert observability._console_writing_alone(access) is _console_handler()
        capsys.readouterr()
        client.get(path, headers=headers)
        direct_text = capsys.readouterr().out

        access.addFilter(lambda record: True)  # any filter: logging.Logger.handle must run it
        try:
            assert observability._console_writing_alone(access) is None
            client.get(path, headers=headers)
            logged_text = capsys.readouterr().out
        finally:
            access.filters.clear()

    (direct,) = json_log_lines(direct_text)
    (logged,) = json_log_lines(logged_text)
    assert list(direct) == list(logged)
    assert _comparable(direct) == _comparable(logged)
    # Byte for byte but the time and the duration: same escapes, spacing and order.
    assert (
        direct_text.split('"request_id"')[1].split('"message"')[0]
        == (logged_text.split('"request_id"')[1].split('"message"')[0])
    )
    assert (
        direct_text.split('"path"')[1].split('"duration_ms"')[0]
        == (logged_text.split('"path"')[1].split('"duration_ms"')[0])
    )


def test_a_handler_added_anywhere_gets_the_access_record(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """The direct path is taken only while the console is the record's one destination."""
    records: list[logging.LogRecord] = []
    collector = logging.Handler()
    collector.emit = records.append  # type: ignore[method-assign]
    parent = logging.getLogger("ecommerce")
    with console_alone():
        parent.addHandler(collector)
        try:
            _, line = one_request_logged(client, capsys)
        finally:
            parent.removeHandler(collector)
    (record,) = [r for r in records if r.name == ACCESS_LOGGER]
    assert record.getMessage() == line["message"]


@pytest.mark.parametrize(
    "created",
    [
        0.0,
        1.0,
        1_765_000_000.0005,
        1_765_000_000.9994999,
        1_765_000_000.9999995,
        1_765_000_059.99995,
    ],
)
def test_the_log_time_is_the_one_datetime_formats(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert observability._utc_iso(created) == expected


def test_a_generated_request_id_is_a_random_uuid4_hex() -> None:
    ids = {request_observation.new_request_id() for _ in range(100)}
    assert len(ids) == 100
    for request_id in ids:
        parsed = uuid.UUID(hex=request_id)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, request_id)


def test_building_many_apps_writes_each_line_once(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    """Logging is per process: every create_app replaces the handler, never adds one."""
    for _ in range(3):
        client = make_app().test_client()

    _, line = one_request_logged(client, capsys)  # one_request_logged asserts exactly one
    assert line["path"] == "/categories"


# --- ProxyFix --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hops", "forwarded_for", "expected"),
    [
        (1, CLIENT_ADDRESS, CLIENT_ADDRESS),
        # A client's own X-Forwarded-For entry comes first; the proxy appends the
        # address it saw. One trusted hop takes that last entry: no spoofing.
        (1, f"10.9.9.9, {CLIENT_ADDRESS}", CLIENT_ADDRESS),
        (0, CLIENT_ADDRESS, PROXY_ADDRESS),
    ],
)
def test_remote_addr_comes_from_x_forwarded_for_only_through_trusted_hops(
    make_app: Callable[..., Flask],
    capsys: pytest.CaptureFixture[str],
    hops: int,
    forwarded_for: str,
    expected: str,
) -> None:
    client = make_app(PROXY_FIX_X_FOR=hops).test_client()

    _, line = one_request_logged(
        client,
        capsys,
        headers={"X-Forwarded-For": forwarded_for},
        environ_base={"REMOTE_ADDR": PROXY_ADDRESS},
    )

    assert line["remote_addr"] == expected


# --- /metrics ----------------------------------------------------------------------------


def test_metrics_count_requests_by_url_rule_cache_result_and_db_load(client: FlaskClient) -> None:
    category_rule = {"method": "GET", "route": "/categories/<int:category_id>", "status": "200"}
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    before = {
        "category": scrape(client, "ecommerce_http_requests_total", **category_rule),
        "unmatched": scrape(client, "ecommerce_http_requests_total", **unmatched),
        "hit": scrape(client, "ecommerce_cache_requests_total", cache="categories", result="hit"),
        "miss": scrape(client, "ecommerce_cache_requests_total", cache="categories", result="miss"),
        "loads": scrape(client, "ecommerce_db_loads_total"),
    }

    client.get("/categories/1")
    client.get("/categories/2")
    client.get("/no-such-page/1")
    client.get("/categories")  # miss: one database load
    client.get("/categories")  # hit
    client.get("/categories")  # hit

    assert (
        scrape(client, "ecommerce_http_requests_total", **category_rule) == before["category"] + 2
    )
    assert scrape(client, "ecommerce_http_requests_total", **unmatched) == before["unmatched"] + 1
    assert (
        scrape(client, "ecommerce_cache_requests_total", cache="categories", result="hit")
        == before["hit"] + 2
    )
    assert (
        scrape(client, "ecommerce_cache_requests_total", cache="categories", result="miss")
        == before["miss"] + 1
    )
    assert scrape(client, "ecommerce_db_loads_total") == before["loads"] + 1
    assert scrape(
        client, "ecommerce_http_request_duration_seconds_count", method="GET", route="/categories"
    )


def test_a_kept_series_is_the_one_the_metric_holds() -> None:
    """metrics.labelled keeps what labels() returns: the same child, so the same counts."""
    labels = ("GET", metrics.UNMATCHED_ROUTE, "404")

    kept = metrics.labelled(metrics.HTTP_REQUESTS, *labels)

    assert kept is metrics.HTTP_REQUESTS.labels(*labels)
    assert metrics.labelled(metrics.HTTP_REQUESTS, *labels) is kept


def test_an_unknown_http_method_does_not_create_a_new_series(client: FlaskClient) -> None:
    labels = {"method": "OTHER", "route": "unmatched", "status": "405"}
    before = scrape(client, "ecommerce_http_requests_total", **labels)

    assert client.open("/categories", method="BREW").status_code == 405

    assert scrape(client, "ecommerce_http_requests_total", **labels) == before + 1


def test_dynamodb_calls_are_timed_by_operation(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]
) -> None:
    client = make_app(**dynamodb_cache_config).test_client()
    before = scrape(client, "ecommerce_dynamodb_call_duration_seconds_count", operation="GetItem")

    # A miss: GetItem, PutItem (the lease), GetItem (did someone store it meanwhile?),
    # PutItem (the list), DeleteItem (the lease). A hit: one GetItem.
    client.get("/categories")
    client.get("/categories")

    after = scrape(client, "ecommerce_dynamodb_call_duration_seconds_count", operation="GetItem")
    assert after == before + 3


def test_a_failing_dynamodb_call_is_an_error_in_metrics_and_in_the_log_line(
    make_app: Callable[..., Flask],
    dynamodb_cache_config: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    app = make_app(
        **{
            **dynamodb_cache_config,
            "CACHE_DYNAMODB_ENDPOINT_URL": nothing_listens,
            "CACHE_DYNAMODB_CREATE_TABLE": False,
        }
    )
    client = app.test_client()
    errors_before = scrape(client, "ecommerce_dynamodb_call_errors_total", operation="GetItem")
    cache_errors_before = scrape(
        client, "ecommerce_cache_requests_total", cache="categories", result="error"
    )

    response, line = one_request_logged(client, capsys)

    assert response.status_code == 200
    assert response.headers["X-Cache"] == "MISS"  # for the client, an outage is a miss
    assert line["cache"] == "ERROR"  # for the operator, it is not
    assert scrape(client, "ecommerce_dynamodb_call_errors_total", operation="GetItem") == (
        errors_before + 1
    )
    assert scrape(client, "ecommerce_cache_requests_total", cache="categories", result="error") == (
        cache_errors_before + 1
    )


def test_a_write_reports_cache_errors_in_its_log_line_only(
    make_app: Callable[..., Flask],
    dynamodb_cache_config: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A POST reads no cache, so it adds nothing to the cache counter, but its failed
    invalidation is what an operator needs to see on its line."""
    app = make_app(
        **{
            **dynamodb_cache_config,
            "CACHE_DYNAMODB_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "CACHE_DYNAMODB_CREATE_TABLE": False,
        }
    )
    client = app.test_client()
    capsys.readouterr()

    post_category(client, "Toys")

    (line,) = access_lines(capsys)
    assert (line["method"], line["status"], line["cache"]) == ("POST", 201, "ERROR")


# --- the ALB's trace id --------------------------------------------------------------

ALB_TRACE_ID = "Self=1-67891234-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678"


def test_the_albs_trace_id_is_logged_echoed_and_in_problem_bodies(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response, line = one_request_logged(client, capsys, headers={"X-Amzn-Trace-Id": ALB_TRACE_ID})
    assert line["trace_id"] == ALB_TRACE_ID
    assert response.headers["X-Amzn-Trace-Id"] == ALB_TRACE_ID

    not_found, _ = one_request_logged(
        client, capsys, "/no-such-page", headers={"X-Amzn-Trace-Id": ALB_TRACE_ID}
    )
    assert not_found.status_code == 404
    assert not_found.get_json(force=True)["trace_id"] == ALB_TRACE_ID


@pytest.mark.parametrize(
    "hostile",
    [
        "Root=1-" + "a" * 300,  # oversized
        'Root=1-abc"}, "level": "ERROR',  # would close the JSON string if echoed raw
        "Root=1-abc\\u000a",
        "Root=1-abc; Sampled=1",  # a space
        "not a trace id",
    ],
)
def test_a_malformed_or_oversized_trace_id_is_dropped(
    client: FlaskClient, capsys: pytest.CaptureFixture[str], hostile: str
) -> None:
    response, line = one_request_logged(client, capsys, headers={"X-Amzn-Trace-Id": hostile})
    assert "trace_id" not in line
    assert "X-Amzn-Trace-Id" not in response.headers


def test_without_a_trace_id_nothing_is_added(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response, line = one_request_logged(client, capsys)
    assert "trace_id" not in line
    assert "X-Amzn-Trace-Id" not in response.headers
    assert line["request_id"] == response.headers["X-Request-ID"]


REJECTED = "ecommerce_cache_rejected_entries_total"


def test_an_entry_signed_with_a_key_this_instance_does_not_accept_is_counted(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]
) -> None:
    """A signing-key rotation done in the wrong order: one instance writes under a key the
    other does not accept. The reader serves the database's list and counts the rejection."""
    writer = make_app(**{**dynamodb_cache_config, "CACHE_DYNAMODB_SIGNING_KEY": "a-key-of-its-own"})
    reader = make_app(**dynamodb_cache_config)
    client = reader.test_client()
    before = scrape(client, REJECTED, reason=BAD_SIGNATURE)
    assert writer.test_client().get("/categories").headers["X-Cache"] == "MISS"  # stored

    response = client.get("/categories")

    assert response.status_code == 200 and response.headers["X-Cache"] == "MISS"
    assert scrape(client, REJECTED, reason=BAD_SIGNATURE) > before  # once per item read


def test_a_value_in_parts_read_as_a_miss_is_counted_by_reason(
    make_app: Callable[..., Flask],
    dynamodb_cache_config: dict[str, Any],
    dynamodb_local: DynamoDBLocal,
) -> None:
    """A part reclaimed under a manifest: the value is a miss, and the operator sees why."""
    app = make_app(**dynamodb_cache_config)
    client = app.test_client()
    backend = app.extensions["cache"][cache]
    before = scrape(client, REJECTED, reason=MISSING)
    assert backend.set("large", os.urandom(LARGER_THAN_AN_ITEM))  # random: gzip cannot shrink it
    table = boto3.resource("dynamodb", endpoint_url=dynamodb_local.endpoint_url).Table(
        dynamodb_cache_config["CACHE_DYNAMODB_TABLE"]
    )
    parts = [
        item["cache_key"] for item in table.scan()["Items"] if PART_KEY_MARKER in item["cache_key"]
    ]
    assert len(parts) == 2
    table.delete_item(Key={"cache_key": parts[0]})

    assert backend.get("large") is None

    assert scrape(client, REJECTED, reason=MISSING) == before + 1
