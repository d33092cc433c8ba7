"""The app's extension objects, created unbound so any module can import them.

``create_app`` binds them to an app with ``init_app``; nothing connects at import.
"""

from __future__ import annotations

from pathlib import Path

from cachelib import SimpleCache
from flask import Flask
from flask_caching import Cache
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from cache_backends.frozen import ReusingSerializer
from cache_backends.near import NearCache


class Base(DeclarativeBase):
    """Declarative base so models use SQLAlchemy 2.0 typed ``Mapped`` columns."""


cache = Cache()
db = SQLAlchemy(model_class=Base)
#: Alembic's scripts ship inside the package (the deploy installs a wheel, not a checkout).
MIGRATIONS_DIRECTORY = Path(__file__).parent / "migrations"
migrate = Migrate(directory=str(MIGRATIONS_DIRECTORY))


def init_cache(app: Flask) -> None:
    """``cache.init_app``, then the near-cache in front of a shared backend if configured.

    CACHE_NEAR_TTL > 0 layers :class:`~cache_backends.near.NearCache` over the
    backend Flask-Caching built (any shared one: DynamoDB, Redis); an in-process
    SimpleCache is already near and is left alone.
    """
    cache.init_app(app)
    near_ttl = app.config["CACHE_NEAR_TTL"]
    backends = app.extensions["cache"]
    if isinstance(backends[cache], SimpleCache):
        # A hit of an immutable value (the categories' representation) unpickles nothing.
        backends[cache].serializer = ReusingSerializer()
    if near_ttl <= 0:
        return
    if isinstance(backends[cache], SimpleCache):
        app.logger.info("CACHE_NEAR_TTL ignored: SimpleCache already lives in this process")
        return
    backends[cache] = NearCache(backends[cache], near_ttl)
