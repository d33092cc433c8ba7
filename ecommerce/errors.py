"""Every HTTP error as ``application/problem+json`` (RFC 9457), so clients parse one shape."""

from __future__ import annotations

import json

from flask import Flask, Response, current_app
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from ecommerce.request_observation import current_trace_id

PROBLEM_JSON_MIMETYPE = "application/problem+json"
#: RFC 9457: "about:blank" says the title is just the HTTP status phrase.
GENERIC_PROBLEM_TYPE = "about:blank"
#: Seconds a client should wait before retrying when the database is down or saturated.
DATABASE_RETRY_AFTER_SECONDS = 5


def problem_response(error: HTTPException) -> Response:
    """Render ``error`` as problem+json, keeping its headers (Allow, WWW-Authenticate).

    An unhandled exception reaches here as a 500 whose description is werkzeug's
    generic sentence: Flask has already logged the traceback, and none of it leaks.
    """
    response = error.get_response()
    problem = {
        "type": GENERIC_PROBLEM_TYPE,
        "title": error.name,
        "status": error.code,
        "detail": error.description,
    }
    trace_id = current_trace_id()
    if trace_id is not None:  # what a client reporting the problem can quote
        problem["trace_id"] = trace_id
    response.set_data(json.dumps(problem))
    response.content_type = PROBLEM_JSON_MIMETYPE
    return response


def database_unavailable(error: OperationalError | PoolTimeoutError) -> Response:
    """503 with Retry-After, not 500: the database is down, saturated or too slow right now.

    The connection failed, a statement ran past DATABASE_STATEMENT_TIMEOUT_MS, or
    no pooled connection came free within DATABASE_POOL_TIMEOUT. Nothing was
    changed (the transaction did not commit), so a retry is safe.
    """
    current_app.logger.warning("database unavailable: %s", str(error).splitlines()[0])
    unavailable = ServiceUnavailable(
        "the database is unavailable or busy; nothing was changed, try again shortly",
        retry_after=DATABASE_RETRY_AFTER_SECONDS,
    )
    return problem_response(unavailable)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, problem_response)
    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(PoolTimeoutError, database_unavailable)
