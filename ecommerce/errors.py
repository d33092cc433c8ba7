"""Every HTTP error as ``application/problem+json`` (RFC 9457), so clients parse one shape."""

from __future__ import annotations

import json

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

PROBLEM_JSON_MIMETYPE = "application/problem+json"
#: RFC 9457: "about:blank" says the title is just the HTTP status phrase.
GENERIC_PROBLEM_TYPE = "about:blank"


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
    response.set_data(json.dumps(problem))
    response.content_type = PROBLEM_JSON_MIMETYPE
    return response


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, problem_response)
