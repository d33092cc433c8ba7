"""ecommerce/flask_app.py: Flask's answers kept, not asked again per request."""

from __future__ import annotations

from collections.abc import Callable

import flask.app
import pytest
from flask import Flask

from ecommerce.sessions import NoSessions


def test_each_function_is_checked_for_a_coroutine_once(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    checked: list[Callable[..., object]] = []

    def counting_check(func: Callable[..., object]) -> bool:
        checked.append(func)
        return False

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counting_check)
    client = app.test_client()

    for _ in range(3):
        assert client.get("/categories/1").status_code == 200

    view = app.view_functions["categories.get_category"]
    assert checked.count(view) == 1
    assert len(checked) == len(set(checked)), "every hook and view asked about once"
    assert app.ensure_sync(view) is view


def test_the_app_opens_no_sessions(make_app: Callable[..., Flask]) -> None:
    assert isinstance(make_app().session_interface, NoSessions)
