"""ecommerce/sessions.py: no session is opened, read from a cookie or written."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask, session


def test_a_request_with_a_session_cookie_opens_no_session_and_sets_no_cookie(
    make_app: Callable[..., Flask],
) -> None:
    """Even with a SECRET_KEY, which makes Flask's default interface sign cookies."""
    app = make_app(SECRET_KEY="a key that signs nothing")
    client = app.test_client()
    client.set_cookie("session", "eyJ1c2VyIjoiYWRtaW4ifQ.forged")

    response = client.get("/categories")

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    with app.test_request_context("/categories"):
        assert dict(session) == {}
        with pytest.raises(RuntimeError):  # a view relying on a session fails loudly
            session["user"] = "admin"
