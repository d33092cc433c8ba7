"""Liveness (``/healthz``) and readiness (``/readyz``) for load balancers and orchestrators.

Liveness answers while the process can serve HTTP, whatever the DB or cache do:
a load balancer that saw a cache outage there would pull every instance at once,
though the API keeps answering from the database.

Readiness checks what the API cannot answer without: the database. The cache is
reported but never fails readiness, for the same reason: every instance shares
one DynamoDB table, so one DynamoDB blip would take the whole fleet out together,
while the categories API degrades to database reads on its own.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import ServiceUnavailable

from ecommerce.extensions import cache, db

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

#: The cheapest statement every SQL database answers, through the app's own pool.
DATABASE_PROBE = "SELECT 1"


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> dict[str, Any]:
    """200 when the database answers, with the cache's state; 503 naming the database."""
    try:
        db.session.execute(text(DATABASE_PROBE))
    except SQLAlchemyError as error:
        logger.warning("not ready: the database did not answer %s: %s", DATABASE_PROBE, error)
        # The body names the failing dependency but not the error text, which can
        # carry host names; the log line above has it, under the same request id.
        raise ServiceUnavailable(
            f"the database did not answer {DATABASE_PROBE} ({type(error).__name__})"
        ) from None
    return {"status": "ready", "database": "ok", "cache": _cache_report()}


def _cache_report() -> dict[str, Any]:
    """The backend's own ``health()`` (DynamoDBCache: table and circuit state) or its type."""
    backend = cache.cache
    health = getattr(backend, "health", None)
    if callable(health):
        return health()
    return {"backend": current_app.config["CACHE_TYPE"]}
