"""Liveness (``/healthz``) and readiness (``/readyz``) for load balancers and orchestrators.

Liveness answers while the process can serve HTTP, whatever the DB or cache do:
a load balancer that saw a cache outage there would pull every instance at once,
though the API keeps answering from the database.

Readiness checks what the API cannot answer without: the database, at the schema
revision this release's code expects or a later release's (an instance whose init-db
failed would answer every write with an error; a newer schema keeps the previous release
working by rule, so a rolling update can roll back after it migrated). The cache, and
its catalogue version against the database's, are reported but never fail
readiness, for the same reason: every instance shares
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

from ecommerce.categories.cache_policy import categories_region
from ecommerce.database import is_newer_schema, schema_head
from ecommerce.extensions import cache, db

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

#: One cheap statement, through the app's own pool: the database answers, and says
#: which revision of the schema it has (Alembic's one-row table).
DATABASE_PROBE = "SELECT version_num FROM alembic_version"


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> dict[str, Any]:
    """200 when the database answers at this release's schema, with the cache's state; else 503."""
    try:
        revision = db.session.execute(text(DATABASE_PROBE)).scalar()
    except SQLAlchemyError as error:
        logger.warning("not ready: the database did not answer %s: %s", DATABASE_PROBE, error)
        # The body names the failing dependency but not the error text, which can
        # carry host names; the log line above has it, under the same request id.
        raise ServiceUnavailable(
            f"the database did not answer {DATABASE_PROBE} ({type(error).__name__}); "
            "if it is up, its schema was never upgraded: run flask --app wsgi init-db"
        ) from None
    if revision != schema_head() and not is_newer_schema(revision):
        logger.warning("not ready: schema at %s, this release needs %s", revision, schema_head())
        raise ServiceUnavailable(
            f"the database schema is at revision {revision}, this release needs "
            f"{schema_head()}: run flask --app wsgi init-db with this release"
        )
    return {
        "status": "ready",
        "database": "ok",
        "schema": revision,
        # A later release's schema is served (see the module's docstring); said, not hidden.
        "schema_is_newer": revision != schema_head(),
        "cache": _cache_report(),
        "coherence": _coherence_report(),
    }


def _coherence_report() -> dict[str, Any]:
    """The catalogue version in the database against the cached list's (its region).

    Reported, never required: a cache behind or unavailable leaves the instance
    ready (the reconciler repairs the one, the database answers for the other).
    The database's version is the one more statement this costs.
    """
    try:
        return categories_region().report()
    except SQLAlchemyError as error:  # the probe above answered: a blip, not unreadiness
        logger.warning("readiness: the catalogue version could not be read: %s", error)
        return {"error": f"the catalogue version could not be read ({type(error).__name__})"}


def _cache_report() -> dict[str, Any]:
    """The backend's own ``health()`` (DynamoDBCache: table and circuit state) or its type."""
    backend = cache.cache
    health = getattr(backend, "health", None)
    if callable(health):
        return health()
    return {"backend": current_app.config["CACHE_TYPE"]}
