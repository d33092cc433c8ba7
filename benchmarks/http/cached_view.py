"""What a Flask-Caching user would write instead of this project: ``@cache.cached`` on a view.

The scale benchmark's ``cached-view`` contender (``gunicorn
'benchmarks.http.cached_view:create_app()'`` under the repository's gunicorn.conf.py,
a factory so that importing this module starts nothing). The
view reads every category from the contender's own database file and returns
``jsonify(list)``; Flask-Caching's view decorator keeps the whole ``Response``
in SimpleCache. A hit unpickles that response (cachelib's SimpleCache stores
values pickled) and sends its bytes: no JSON encoding, but no compression
either, whatever the client accepts, and none of the app's per-request work
(access log, metrics, request id, security headers, ETag). It lives here, not
in ``ecommerce``: it is a yardstick, not part of the service.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify
from flask_caching import Cache
from sqlalchemy import create_engine, text

#: Longer than any run, so every measured request is a hit once the first has loaded.
CACHED_VIEW_TIMEOUT_SECONDS = 3600
#: The columns the app lists, in the order it lists them (its repository: by id).
CATEGORIES_QUERY = text("SELECT id, name FROM categories ORDER BY id")


def create_app() -> Flask:
    """The app on the benchmark's FLASK_SQLALCHEMY_DATABASE_URI, as the real app reads it."""
    app = Flask(__name__)
    app.config.from_prefixed_env()
    cache = Cache(
        app,
        config={"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": CACHED_VIEW_TIMEOUT_SECONDS},
    )
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])

    @app.get("/categories")
    @cache.cached()
    def list_categories() -> Response:
        with engine.connect() as connection:
            rows = connection.execute(CATEGORIES_QUERY).all()
        return jsonify([{"id": row.id, "name": row.name} for row in rows])

    @app.get("/healthz")
    def healthz() -> Response:
        """What ``devtools.fleet.wait_until_healthy`` polls before the benchmark starts."""
        return jsonify(status="ok")

    return app
