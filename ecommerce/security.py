"""Response headers every answer carries, whatever produced it (a view, an error, /metrics).

- ``X-Content-Type-Options: nosniff``: a browser never second-guesses our JSON as HTML.
- ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``: no page can frame an
  answer (the legacy header for old browsers, the CSP directive for current ones).
- ``Cache-Control: no-store`` on writes and errors: no proxy or browser keeps a 201, a
  204 or a 4xx/5xx (an error for one client is not an answer for the next).
"""

from __future__ import annotations

from flask import Flask, Response, request

#: Methods that never change anything; every other one is a write.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}
NO_STORE = "no-store"
#: Header names compare without case; lowered once here rather than per request.
_ALWAYS_BY_LOWER_NAME = {name.lower(): (name, value) for name, value in ALWAYS.items()}


def add_security_headers(response: Response) -> Response:
    """Add each of ``ALWAYS`` that the response does not set itself.

    One pass over the response's headers, not a ``setdefault`` per name: each of
    those searches every header twice (present? then set).
    """
    headers = response.headers
    present = {name.lower() for name, _ in headers}
    for lower_name, (name, value) in _ALWAYS_BY_LOWER_NAME.items():
        if lower_name not in present:
            headers.add(name, value)
    if request.method not in SAFE_METHODS or response.status_code >= 400:
        headers["Cache-Control"] = NO_STORE
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
