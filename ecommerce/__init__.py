"""The categories API: ``create_app`` builds a configured Flask app; nothing runs at import.

As in Flask's tutorial (flaskr), the app's modules are imported inside
``create_app``: importing ``ecommerce`` (or ``ecommerce.config``, which gunicorn's
master does to check the settings before it forks) loads no extension, no cache
backend and no blueprint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then FLASK_* environment, then ``config``, then validation.

    ``config`` wins over the environment so tests stay independent of the shell.
    A bad setting raises ``ecommerce.config.ConfigError`` naming it, before any
    extension connects anywhere.
    """
    from werkzeug.middleware.proxy_fix import ProxyFix

    from cache_backends.cli import cache_cli
    from ecommerce import categories, health, observability, openapi, security
    from ecommerce.categories import cache_policy
    from ecommerce.categories.hit_path import ListHitPath
    from ecommerce.config import ConfigError, load_config, unprefixed_settings
    from ecommerce.database import init_db_command
    from ecommerce.errors import register_error_handlers
    from ecommerce.extensions import db, init_cache, migrate
    from ecommerce.flask_app import ApiFlask
    from ecommerce.request_observation import ObservedRequests

    app = ApiFlask(__name__, instance_relative_config=True)
    load_config(app.config, config)
    observability.init_app(app)  # before cache.init_app: it sets the backend's metric hooks
    if unprefixed := unprefixed_settings(os.environ):
        app.logger.warning(
            "ignored: %s set in the environment without the FLASK_ prefix (the app reads %s)",
            ", ".join(unprefixed),
            ", ".join(f"FLASK_{name}" for name in unprefixed),
        )
    security.init_app(app)

    db.init_app(app)
    migrate.init_app(app, db)  # flask db upgrade|downgrade|current|history; init-db upgrades
    try:
        init_cache(app)  # Flask-Caching's backend, and the near-cache in front if configured
    except ValueError as error:
        # A backend's factory refusing a setting of its own (CACHE_DYNAMODB_*) names it:
        # a bad setting like the others, reported the same way (one line, no traceback).
        raise ConfigError(f"invalid configuration: {error}") from error
    cache_policy.init_app(app)  # the categories loader, on the backend just built

    app.register_blueprint(health.bp)
    app.register_blueprint(categories.bp)
    app.register_blueprint(openapi.bp)
    register_error_handlers(app)
    app.cli.add_command(init_db_command)
    app.cli.add_command(cache_cli)  # flask cache create-table | status | clear

    # WSGI layers around Flask, innermost first. The list's hit path answers GET
    # /categories without Flask's machinery (hit_path.py). ProxyFix: hop counts, not a
    # trusted-address list: each proxy appends one X-Forwarded-For entry, so the app
    # takes the entry written by the last trusted hop and anything a client put before
    # it is ignored; 0 (the default) leaves the headers unused. Outermost, each
    # request's observation (id, trace id, start), which every path finds.
    app.wsgi_app = ListHitPath(  # type: ignore[method-assign]
        app, cache_policy.categories_region(app), app.wsgi_app
    )
    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
        app.wsgi_app,
        x_for=app.config["PROXY_FIX_X_FOR"],
        x_proto=app.config["PROXY_FIX_X_PROTO"],
        x_host=app.config["PROXY_FIX_X_HOST"],
    )
    app.wsgi_app = ObservedRequests(app.wsgi_app)  # type: ignore[method-assign]
    return app
