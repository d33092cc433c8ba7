"""Bearer-token protection for writes, active only when ADMIN_TOKEN is set."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

P = ParamSpec("P")
R = TypeVar("R")

BEARER_SCHEME = "bearer"


def _bearer_token() -> str | None:
    # Parsed by hand: werkzeug reads a token with an inner "=" as auth parameters.
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == BEARER_SCHEME and token.strip() else None


def admin_token_required(view: Callable[P, R]) -> Callable[P, R]:
    """Refuse the request with 401 unless it carries ``Authorization: Bearer <ADMIN_TOKEN>``."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        expected: str | None = current_app.config["ADMIN_TOKEN"]
        if expected is not None:
            given = _bearer_token()
            # compare_digest: the comparison time must not reveal how much matched.
            if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
                raise Unauthorized(
                    "this request needs the header 'Authorization: Bearer <ADMIN_TOKEN>'",
                    www_authenticate=WWWAuthenticate(BEARER_SCHEME),
                )
        return view(*args, **kwargs)

    return wrapper
