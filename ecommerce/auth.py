"""Bearer-token protection for writes: closed unless ADMIN_TOKEN is configured.

``ADMIN_TOKEN`` is one secret, or a list of them while rotating (deploy the new
one beside the old, move the clients over, drop the old). With none configured,
writes are refused with 403 naming the setting: a forgotten variable must never
leave the catalogue writable by anyone.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

P = ParamSpec("P")
R = TypeVar("R")

BEARER_SCHEME = "bearer"


def _bearer_token() -> str | None:
    # Parsed by hand: werkzeug reads a token with an inner "=" as auth parameters.
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == BEARER_SCHEME and token.strip() else None


def configured_tokens(setting: str | list[str] | None) -> list[str]:
    """ADMIN_TOKEN as a list: unset is none, one string is one token."""
    if setting is None:
        return []
    return [setting] if isinstance(setting, str) else list(setting)


def _is_accepted(given: str, tokens: list[str]) -> bool:
    # compare_digest against every token, no early exit: the time taken must not
    # reveal how much of a token matched, nor which one.
    matches = [hmac.compare_digest(given.encode(), token.encode()) for token in tokens]
    return any(matches)


def admin_token_required(view: Callable[P, R]) -> Callable[P, R]:
    """Refuse the request unless it carries ``Authorization: Bearer <an ADMIN_TOKEN>``.

    403 when no token is configured (writes are disabled), 401 when the header
    is missing or wrong.
    """

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        tokens = configured_tokens(current_app.config["ADMIN_TOKEN"])
        if not tokens:
            raise Forbidden(
                "writes are disabled: no ADMIN_TOKEN is configured (set FLASK_ADMIN_TOKEN "
                "to a secret, or to a JSON list of secrets while rotating)"
            )
        given = _bearer_token()
        if given is None or not _is_accepted(given, tokens):
            raise Unauthorized(
                "this request needs the header 'Authorization: Bearer <ADMIN_TOKEN>'",
                www_authenticate=WWWAuthenticate(BEARER_SCHEME),
            )
        return view(*args, **kwargs)

    return wrapper
