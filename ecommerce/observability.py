"""Request ids, the per-request log line, JSON logging and metrics: one ``init_app(app)``.

What each request gets, in one place so views stay HTTP-only:

- a request id: the client's (or the proxy's) ``X-Request-ID`` when it is sane,
  otherwise a fresh uuid4; returned in the response header and carried by every
  log line written while the request runs, so one id finds all of them;
- one log line when it ends (logger ``ecommerce.access``): method, path,
  status, duration_ms, remote_addr (the client, once ProxyFix has run) and the
  cache result (HIT/MISS from the view's ``X-Cache`` header, ERROR when the
  DynamoDB backend reported a failed call during the request, ``-`` otherwise);
- the ALB's trace id (``X-Amzn-Trace-Id``) when it is well formed: on the log
  line as ``trace_id``, echoed on the response (the ALB does not) and in
  problem+json bodies, so a client quoting it leads to the ALB's access log and
  ours. Absent or malformed: dropped, nothing is generated (the request id is
  ours). Not added to DynamoDB calls: DynamoDB records no caller trace id outside
  X-Ray, and the background refreshes run outside the request that caused them;
- request count and latency metrics by URL rule, and the cache result counter.

Both paths an answer takes end the same way: Flask's ``after_request`` hook and the
list's hit path (``ecommerce/categories/hit_path.py``) call :func:`record_request`,
and find the request's id, trace id and start where
``ecommerce.request_observation.ObservedRequests``, the app's outermost WSGI layer,
put them.

Never logged: request headers (Authorization carries the admin token), the query
string and the body. gunicorn's own access log repeats this line without the
cache result, so gunicorn.conf.py leaves it off.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import click
from flask import Flask, Request, Response, request
from flask.logging import default_handler
from pythonjsonlogger.json import JsonFormatter

from cache_backends import signals
from ecommerce import metrics
from ecommerce.request_observation import (
    RequestObservation,
    current_observation,
    running_observation,
)

#: Tells clients (and the curl walk-through in the README) where an answer came
#: from; the per-request log line and the cache metrics read it back.
CACHE_STATUS_HEADER = "X-Cache"

#: Written where no request is running (start-up, CLI commands) or none was assigned.
NO_REQUEST_ID = "-"
#: The cache field of a request that did not read a cache (a POST, /healthz).
NO_CACHE_RESULT = "-"
CACHE_ERROR_RESULT = "ERROR"

#: The app's own loggers, set to LOG_LEVEL. Libraries keep the root logger's level
#: (WARNING): botocore's DEBUG lines would carry signed request headers.
APP_LOGGER_NAMES = ("ecommerce", "cache_backends")
ACCESS_LOGGER = logging.getLogger("ecommerce.access")

JSON_LOG_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"
JSON_FIELD_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
TEXT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
#: The record attribute carrying the access line's JSON fields as one dict.
ACCESS_FIELDS = "access_fields"
ACCESS_MESSAGE = "%s %s %d %.1fms cache=%s"

MILLISECONDS_PER_SECOND = 1000
MICROSECONDS_PER_SECOND = 1_000_000
#: The record attribute the request id filter sets (``%(request_id)s`` in the formats).
REQUEST_ID_ATTRIBUTE = "request_id"
_ACCESS_LEVEL_NAME = logging.getLevelName(logging.INFO)
# --- logging ------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _utc_second(whole_seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a Unix second in UTC: the same for every line in it."""
    return datetime.fromtimestamp(whole_seconds, UTC).replace(tzinfo=None).isoformat()


def _utc_iso(created: float) -> str:
    """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, the
    date and time formatted once per second rather than once per line.

    The microseconds are rounded as ``fromtimestamp`` rounds them (half to even, of
    the fraction) before the milliseconds are cut from them, as ``isoformat`` does.
    """
    fraction, whole = math.modf(created)
    microseconds = round(fraction * MICROSECONDS_PER_SECOND)
    if microseconds >= MICROSECONDS_PER_SECOND:
        microseconds -= MICROSECONDS_PER_SECOND
        whole += 1
    return f"{_utc_second(int(whole))}.{microseconds // 1000:03d}+00:00"


class _UtcIsoTime(logging.Formatter):
    """ISO 8601 in UTC with milliseconds: what log pipelines parse without a pattern."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_iso(record.created)


class _JsonLogFormatter(_UtcIsoTime, JsonFormatter):
    """One JSON object per line; ``extra={...}`` fields become top-level keys.

    The access line hands its fields over whole (:data:`ACCESS_FIELDS`): they are
    placed after the format's fields as ``extra`` keys would be, without the
    library's search of every record attribute for extras (about a third of the
    line's formatting). The JSON is still the library's (``serialize_log_record``).
    """

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        known_fields: dict[str, Any] | None = record.__dict__.get(ACCESS_FIELDS)
        if known_fields is None or message_dict:
            super().add_fields(log_data, record, message_dict)
            return
        self._add_access_fields(log_data, record.__dict__, known_fields)

    def _add_access_fields(
        self, log_data: dict[str, Any], attributes: dict[str, Any], fields: dict[str, Any]
    ) -> None:
        for name in self._required_fields:
            log_data[self._get_rename(name)] = attributes.get(name)
        log_data.update(fields)

    def format_access(
        self,
        created: float,
        logger_name: str,
        request_id: str,
        message: str,
        fields: dict[str, Any],
    ) -> str:
        """The line :meth:`format` writes for an INFO access record with these values,
        built without the record (see :func:`_console_writing_alone`)."""
        attributes = {
            "asctime": _utc_iso(created),
            "levelname": _ACCESS_LEVEL_NAME,
            "name": logger_name,
            REQUEST_ID_ATTRIBUTE: request_id,
            "message": message,
        }
        log_data: dict[str, Any] = {}
        self._add_access_fields(log_data, attributes, fields)
        log_data = self.process_log_record(log_data)
        if self.prefix or self.json_serializer is not json.dumps or self.json_indent is not None:
            return self.serialize_log_record(log_data)
        # Every value is a str, an int, a float or None: the library's encoder (for
        # dates, enums, exceptions...) would never be asked, and json.dumps with its
        # default settings reuses one encoder instead of building one per line.
        return json.dumps(log_data, ensure_ascii=self.json_ensure_ascii)


class _RequestIdFilter(logging.Filter):
    """Stamps every record with the running request's id (a handler filter, so it also
    sees records propagated from child loggers, which logger filters never do)."""

    def filter(self, record: logging.LogRecord) -> bool:
        observation = running_observation()
        request_id = NO_REQUEST_ID if observation is None else observation.request_id
        setattr(record, REQUEST_ID_ATTRIBUTE, request_id)
        return True


class _ConsoleHandler(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is at each call, or ``sys.stderr`` under the flask CLI.

    Looked up per record, not held: pytest swaps sys.stdout per test, and a handler
    holding the first test's stream would write into a closed file later. Under
    gunicorn, stdout is where the deploy's log collection reads. Under a ``flask``
    command (a click context is active), stdout carries the command's result, JSON
    that scripts parse, so the log lines go to stderr.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr if click.get_current_context(silent=True) is not None else sys.stdout

    @stream.setter
    def stream(self, value: object) -> None:
        """Ignored: the stream is looked up at each record."""

    def flush(self) -> None:
        """Flush the console, looked up once: ``StreamHandler.flush`` reads ``stream``
        three times, and each lookup asks click for its context."""
        self.acquire()
        try:
            stream = self.stream
            if hasattr(stream, "flush"):
                stream.flush()
        finally:
            self.release()

    def write_formatted(self, line: str, message: str) -> None:
        """Write a line formatted for an INFO record of ``message`` as ``emit`` would:
        under the handler's lock, flushed; a failure reported by ``handleError``."""
        self.acquire()
        try:
            stream = self.stream
            stream.write(line + self.terminator)
            if hasattr(stream, "flush"):
                stream.flush()
        except RecursionError:  # as logging.StreamHandler.emit
            raise
        except Exception:
            self.handleError(
                logging.LogRecord(ACCESS_LOGGER.name, logging.INFO, "", 0, message, None, None)
            )
        finally:
            self.release()


def _console_writing_alone(logger: logging.Logger) -> _ConsoleHandler | None:
    """The console handler if an INFO record of ``logger`` would reach it and nothing
    else, and it would format the record as JSON; else None.

    Then the access line can be formatted and written straight to the console: the
    same bytes ``logger.info`` would write (record, filters, formatter), at a third
    of the cost (``findCaller``'s stack walk, the record's ~20 attributes, the
    formatter's generic path). Checked on every line, so anything that changes the
    logging configuration (another handler or filter, ``propagate``, a level, a
    record factory, pytest's capture) sends the line through ``logging`` as before.
    """
    if logger.filters or logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    console = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if console is not None or type(handler) is not _ConsoleHandler:
                return None
            console = handler
        current = current.parent if current.propagate else None
    if (
        console is None
        or console.level > logging.INFO
        or type(console.formatter) is not _JsonLogFormatter
        or len(console.filters) != 1
        or type(console.filters[0]) is not _RequestIdFilter
    ):
        return None
    return console


def configure_logging(level: str, log_format: str) -> None:
    """Send every log record to the console in ``log_format``, the app's loggers at ``level``.

    The console is stdout, or stderr under the flask CLI (``_ConsoleHandler``).

    Logging is per process, not per app: a second ``create_app`` (tests) replaces
    the handler installed by the first instead of adding another, so no line is
    written twice. The handler sits on the root logger so that library warnings
    come out in the same shape; gunicorn's loggers do not propagate to it.
    """
    handler = _ConsoleHandler()
    if log_format == "json":
        handler.setFormatter(_JsonLogFormatter(JSON_LOG_FIELDS, rename_fields=JSON_FIELD_NAMES))
    else:
        handler.setFormatter(_UtcIsoTime(TEXT_LOG_FORMAT))
    handler.addFilter(_RequestIdFilter())

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ConsoleHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    for name in APP_LOGGER_NAMES:
        logging.getLogger(name).setLevel(level)


# --- request hooks ------------------------------------------------------------------


def start_request() -> None:
    """Begin the observation where the app's WSGI layers did not (a test request
    context); under them it is ObservedRequests's already, and this is a lookup."""
    current_observation()


def finish_request(response: Response) -> Response:
    """Add the id headers, count the request and write its one log line."""
    observation = current_observation()
    headers = response.headers
    for name, value in observation.headers():
        headers[name] = value
    # The request object itself, not the proxy: read several times below.
    current: Request = request._get_current_object()  # type: ignore[attr-defined]
    record_request(
        observation,
        method=current.method,
        path=current.path,
        route=current.url_rule.rule if current.url_rule else metrics.UNMATCHED_ROUTE,
        cache_name=current.blueprint,
        status=response.status_code,
        cache_header=headers.get(CACHE_STATUS_HEADER),
        remote_addr=current.remote_addr,
    )
    return response


def record_request(
    observation: RequestObservation,
    *,
    method: str,
    path: str,
    route: str,
    cache_name: str | None,
    status: int,
    cache_header: str | None,
    remote_addr: str | None,
) -> None:
    """Count an answered request and write its one log line, whichever path answered it.

    ``route`` is the URL rule (the metrics' label); ``cache_header`` the answer's
    ``X-Cache``: only a view that read a cache sets it, and it is counted under
    ``cache_name`` (the view's blueprint, "categories"). Any request can meet a
    failing DynamoDB call (a POST's invalidation, /readyz): its line says ERROR.
    """
    seconds = time.perf_counter() - observation.started_at
    method_label = metrics.method_label(method)
    cache_result = (
        CACHE_ERROR_RESULT if observation.cache_error else cache_header or NO_CACHE_RESULT
    )
    metrics.labelled(metrics.HTTP_REQUESTS, method_label, route, str(status)).inc()
    metrics.labelled(metrics.HTTP_REQUEST_DURATION, method_label, route).observe(seconds)
    if cache_header is not None:
        metrics.labelled(metrics.CACHE_REQUESTS, str(cache_name), cache_result.lower()).inc()
    if ACCESS_LOGGER.isEnabledFor(logging.INFO):  # LOG_LEVEL=WARNING: no fields to build
        _log_access(method, path, status, remote_addr, seconds, cache_result, observation)


def _log_access(
    method: str,
    path: str,
    status: int,
    remote_addr: str | None,
    seconds: float,
    cache_result: str,
    observation: RequestObservation,
) -> None:
    trace_id = observation.trace_id
    duration_ms = round(seconds * MILLISECONDS_PER_SECOND, 2)
    fields = {
        "method": method,
        "path": path,  # never the query string: it can carry tokens
        "status": status,
        "duration_ms": duration_ms,
        "remote_addr": remote_addr,
        "cache": cache_result,
    }
    if trace_id is not None:
        fields["trace_id"] = trace_id
    arguments = (method, path, status, duration_ms, cache_result)
    console = _console_writing_alone(ACCESS_LOGGER)
    if console is None:
        ACCESS_LOGGER.info(ACCESS_MESSAGE, *arguments, extra={ACCESS_FIELDS: fields})
        return
    message = ACCESS_MESSAGE % arguments
    formatter: _JsonLogFormatter = console.formatter  # type: ignore[assignment]
    line = formatter.format_access(
        time.time(), ACCESS_LOGGER.name, observation.request_id, message, fields
    )
    console.write_formatted(line, message)


# --- what the cache reports (cache_backends.signals) ---------------------------------
# One receiver per signal, module-level functions, so a second create_app (tests)
# connects nothing twice. Region signals are labelled by the region's name.


def record_cache_error() -> None:
    """Mark the running request's cache result as ERROR (no-op outside a request)."""
    observation = running_observation()
    if observation is not None:
        observation.cache_error = True


def _observe_dynamodb_call(
    transport: object, *, operation: str, seconds: float, outcome: str, **_: object
) -> None:
    """Latency, errors and throttles per DynamoDB operation, and the request's ERROR flag.

    A call the open circuit skipped never reached DynamoDB: it counts as an error
    but not as a latency, which would drag the histogram towards zero in an outage.
    A throttled call is counted apart: DynamoDB is up, a key is over its capacity.
    """
    if outcome != "skipped":
        metrics.labelled(metrics.DYNAMODB_CALL_DURATION, operation).observe(seconds)
    if outcome == "throttled":
        metrics.labelled(metrics.DYNAMODB_THROTTLES, operation).inc()
    elif outcome != "ok":
        metrics.labelled(metrics.DYNAMODB_CALL_ERRORS, operation).inc()
    if outcome != "ok":
        record_cache_error()


def _count_rejected_entry(entries: object, *, reason: str) -> None:
    metrics.labelled(metrics.CACHE_REJECTED_ENTRIES, reason).inc()


def _count_near_lookup(near: object, *, hit: bool) -> None:
    metrics.labelled(metrics.NEAR_CACHE_LOOKUPS, "hit" if hit else "miss").inc()


def _count_shared_copy(near: object, *, taken: bool) -> None:
    metrics.labelled(metrics.SHARED_COPY_LOOKUPS, "taken" if taken else "read").inc()


def _count_loader_event(region: object, *, name: str, event: str) -> None:
    metrics.labelled(metrics.CACHE_LOADER_EVENTS, name, event).inc()


def _record_region_error(region: object, *, name: str) -> None:
    record_cache_error()


def _count_owed(region: object, *, name: str, outcome: str) -> None:
    metrics.labelled(metrics.CACHE_OWED_UPDATES, name, outcome).inc()


def _set_owed_pending(region: object, *, name: str, pending: int) -> None:
    metrics.labelled(metrics.CACHE_OWED_PENDING, name).set(pending)


def _count_reconcile(
    region: object, *, name: str, outcome: str, lag: int | None, repaired: bool, coherent: bool
) -> None:
    metrics.labelled(metrics.CACHE_RECONCILES, name, outcome).inc()
    if repaired:
        metrics.labelled(metrics.CACHE_RECONCILE_REPAIRS, name, outcome).inc()
    if lag is not None:
        metrics.labelled(metrics.CACHE_VERSION_LAG, name).set(lag)
    if coherent:
        metrics.labelled(metrics.CACHE_COHERENT_TIMESTAMP, name).set_to_current_time()


def _subscribe_to_the_cache() -> None:
    signals.dynamodb_call.connect(_observe_dynamodb_call)
    signals.entry_rejected.connect(_count_rejected_entry)
    signals.near_lookup.connect(_count_near_lookup)
    signals.shared_copy.connect(_count_shared_copy)
    signals.loader_event.connect(_count_loader_event)
    signals.cache_error.connect(_record_region_error)
    signals.owed_outcome.connect(_count_owed)
    signals.owed_pending.connect(_set_owed_pending)
    signals.reconciled.connect(_count_reconcile)


def metrics_view() -> Response:
    body, content_type = metrics.render_latest()
    return Response(body, content_type=content_type)


def init_app(app: Flask) -> None:
    """Install logging, the request hooks, ``GET /metrics`` and the receivers of the
    cache's signals."""
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    app.logger.removeHandler(default_handler)  # the root handler already writes them
    _subscribe_to_the_cache()
    app.before_request(start_request)
    app.after_request(finish_request)
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
