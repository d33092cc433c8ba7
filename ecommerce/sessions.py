"""No sessions: the API authenticates each request by its bearer token and keeps no state.

Flask's default session interface opens a signed-cookie session on every request,
and with a ``SECRET_KEY`` set (DynamoDB's signing key falls back to it) builds an
itsdangerous serializer each time to do so: work that no view here uses. Every
request gets Flask's own :class:`~flask.sessions.NullSession` instead, which reads
as empty and refuses writes, so a view that starts relying on a session fails
loudly instead of silently setting a cookie.
"""

from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import NullSession, SessionInterface, SessionMixin


class NoSessions(SessionInterface):
    """Opens a :class:`NullSession` per request without reading cookies; never saves."""

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.null_session_class()

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Never called: Flask skips saving a null session (``is_null_session``)."""
