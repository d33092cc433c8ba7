"""Each request's observation: its id, the ALB's trace id and its start, for every path.

- The request id is the client's (or the proxy's) ``X-Request-ID`` when it is sane,
  otherwise a fresh uuid4; the trace id is ``X-Amzn-Trace-Id`` when it is well formed,
  never generated (``ecommerce/observability.py`` says where both go).
- :class:`ObservedRequests`, the app's outermost WSGI layer, begins the observation
  and holds it in a context variable for the whole WSGI call, so whichever path
  answers (Flask's hooks, the list's hit path, ``ecommerce/categories/hit_path.py``),
  the log filter and the cache's signals all find the same one, without a request
  context. Greenlets and threads each have their own context variables, so concurrent
  requests in one gevent worker never see each other's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask import g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
#: Longer ids are replaced: an id is for grepping, not a place to store data in logs.
MAX_REQUEST_ID_LENGTH = 200
TRACE_ID_HEADER = "X-Amzn-Trace-Id"
#: The ALB writes ``Root=1-<8 hex>-<24 hex>`` (with ``Self=``, ``Parent=``, ``Sampled=``
#: and custom fields after a hop or from X-Ray): ``Field=value`` pairs joined by ``;``.
#: AWS caps the header at 256 bytes; anything longer, or with a character outside this
#: set (a quote, a newline, a space), is not one and is dropped rather than truncated:
#: half a trace id finds nothing.
_TRACE_ID_PATTERN = re.compile(r"[A-Za-z0-9]+=[A-Za-z0-9._:+-]+(;[A-Za-z0-9]+=[A-Za-z0-9._:+-]+)*")
MAX_TRACE_ID_LENGTH = 256
#: Where WSGI puts the two headers (``HTTP_`` and the name upper-cased, ``-`` as ``_``).
_REQUEST_ID_KEY = "HTTP_X_REQUEST_ID"
_TRACE_ID_KEY = "HTTP_X_AMZN_TRACE_ID"
#: The ``g`` attribute holding the running request's :class:`RequestObservation`.
_OBSERVATION = "request_observation"


@dataclass(slots=True)
class RequestObservation:
    """What the request's hooks, its answer and the log filter know about the running request.

    Started by :class:`ObservedRequests`, the app's outermost WSGI layer, and found
    through a context variable by whichever path answers (Flask's hooks, the
    list's hit path), the log filter and the cache's signals: one lookup, where
    ``g`` goes through a context-local proxy per access.
    """

    started_at: float
    request_id: str
    trace_id: str | None
    cache_error: bool = False

    @classmethod
    def of(cls, environ: WSGIEnvironment) -> RequestObservation:
        """The observation of the request ``environ`` describes, started now."""
        return cls(
            started_at=time.perf_counter(),
            request_id=_request_id_from(environ.get(_REQUEST_ID_KEY)),
            trace_id=trace_id_from(environ.get(_TRACE_ID_KEY)),
        )

    def headers(self) -> list[tuple[str, str]]:
        """What every answer carries: the request id, and the trace id when there is one."""
        if self.trace_id is None:
            return [(REQUEST_ID_HEADER, self.request_id)]
        return [(REQUEST_ID_HEADER, self.request_id), (TRACE_ID_HEADER, self.trace_id)]


#: The running request's observation, for the whole of the WSGI call (ObservedRequests).
_CURRENT: ContextVar[RequestObservation | None] = ContextVar("request_observation", default=None)


class ObservedRequests:
    """The app's outermost WSGI layer: each request's observation (id, trace id, start).

    Outermost so that every path an answer takes, Flask's or the list's hit path
    (``ecommerce.categories.hit_path``), and everything they call (the cache's
    signals, log lines) finds the same observation without a request context.
    Greenlets and threads each have their own context variables, so concurrent
    requests in one gevent worker never see each other's.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        token = _CURRENT.set(RequestObservation.of(environ))
        try:
            return self.app(environ, start_response)
        finally:
            _CURRENT.reset(token)


def _request_id_from(header_value: str | None) -> str:
    """The incoming id if it is printable ASCII of sane length, else a new uuid4 hex.

    Checked because it is echoed into a response header and every log line: a
    newline or a megabyte from a client must not reach either.
    """
    if (
        header_value
        and len(header_value) <= MAX_REQUEST_ID_LENGTH
        and header_value.isascii()
        and header_value.isprintable()
    ):
        return header_value
    return new_request_id()


def new_request_id() -> str:
    """A random (version 4) UUID's 32 hex digits: ``uuid.uuid4().hex``, a third of its cost.

    The bits RFC 9562 (5.4) fixes are set on 16 bytes from ``os.urandom``, as
    ``uuid4`` does, without building a ``UUID`` object (its checks and its int
    round trip were most of the cost).
    """
    random = bytearray(os.urandom(16))
    random[6] = (random[6] & 0x0F) | 0x40  # version 4
    random[8] = (random[8] & 0x3F) | 0x80  # variant: RFC 9562
    return random.hex()


def trace_id_from(header_value: str | None) -> str | None:
    """The ALB's trace header if it is well formed and short, else None (never altered)."""
    if (
        header_value
        and len(header_value) <= MAX_TRACE_ID_LENGTH
        and _TRACE_ID_PATTERN.fullmatch(header_value)
    ):
        return header_value
    return None


def current_trace_id() -> str | None:
    """The running request's validated ``X-Amzn-Trace-Id``, or None."""
    observation = running_observation()
    return None if observation is None else observation.trace_id


def running_observation() -> RequestObservation | None:
    """The running request's observation; None outside a request."""
    observation = _CURRENT.get()
    if observation is None and has_request_context():
        return current_observation()
    return observation


def current_observation() -> RequestObservation:
    """The running request's observation: ObservedRequests's, or, in a request context
    built without the app's WSGI layers (``app.test_request_context()``), one kept in
    ``g`` from first use."""
    observation = _CURRENT.get()
    if observation is None:
        observation = g.get(_OBSERVATION)
        if observation is None:
            observation = RequestObservation.of(request.environ)
            setattr(g, _OBSERVATION, observation)
    return observation
