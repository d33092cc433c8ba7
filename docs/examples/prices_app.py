"""Prices served from a cache, with a region: docs/region.md walks through it."""

import atexit
import hmac
import logging
import sqlite3
from contextlib import closing

from flask import Flask, abort, request
from flask_caching import Cache

from cache_backends import signals
from cache_backends.region import Region

logger = logging.getLogger(__name__)


def log_reconciled(region, *, name, outcome, lag, **_):
    logger.info("%s reconciled: %s (lag %s)", name, outcome, lag)


signals.reconciled.connect(log_reconciled)  # or a Prometheus counter: one receiver per signal


def create_app(config=None):
    app = Flask(__name__)
    app.config.from_mapping(
        CACHE_TYPE="SimpleCache",
        DATABASE="prices.sqlite",
        PRICES_STRATEGY="invalidate",  # or "write-through", "refresh-async"
        ADMIN_TOKEN=None,  # writes need "Authorization: Bearer <it>"; None: no writes
    )
    app.config.from_prefixed_env()  # the environment's FLASK_CACHE_TYPE sets CACHE_TYPE...
    app.config.update(config or {})

    def connect():
        # isolation_level=None: each transaction is the BEGIN ... COMMIT written below.
        return sqlite3.connect(app.config["DATABASE"], isolation_level=None)

    with closing(connect()) as db:
        db.execute("CREATE TABLE IF NOT EXISTS prices (currency TEXT PRIMARY KEY, rate REAL)")
        db.execute("CREATE TABLE IF NOT EXISTS version (id INTEGER PRIMARY KEY, n INTEGER)")
        db.execute("INSERT OR IGNORE INTO version VALUES (1, 0)")
        db.execute("INSERT OR IGNORE INTO prices VALUES ('EUR', 1.0), ('USD', 1.08)")

    def load_prices():
        """The prices and the version they are the state of, read in one transaction."""
        with closing(connect()) as db:
            db.execute("BEGIN")
            prices = dict(db.execute("SELECT currency, rate FROM prices ORDER BY currency"))
            (version,) = db.execute("SELECT n FROM version").fetchone()
            db.execute("COMMIT")
        return prices, version

    def database_version():
        with closing(connect()) as db:
            return db.execute("SELECT n FROM version").fetchone()[0]

    region = Region(
        Cache(app).cache,  # the backend object Flask-Caching built from CACHE_TYPE
        "prices",
        load=load_prices,
        database_version=database_version,
        strategy=app.config["PRICES_STRATEGY"],
        ttl=300,
        stale_seconds=30,
    )
    app.extensions["prices_region"] = region
    if not app.testing:  # tests call region.reconcile_once() themselves
        app.before_request(region.start)  # in each worker, with its first request
        atexit.register(region.stop)  # under gunicorn: call region.stop() from worker_exit

    @app.get("/prices")
    def get_prices():
        loaded = region.get()
        return loaded.value, {"X-Cache": loaded.status}

    @app.put("/prices/<currency>")
    def put_price(currency):
        expected = app.config["ADMIN_TOKEN"]
        sent = request.authorization.token if request.authorization else None
        if not (expected and sent and hmac.compare_digest(sent.encode(), expected.encode())):
            abort(401)
        rate = float(request.get_json()["rate"])
        with closing(connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO prices VALUES (?, ?)", (currency, rate))
            db.execute("UPDATE version SET n = n + 1")
            (version,) = db.execute("SELECT n FROM version").fetchone()
            db.execute("COMMIT")
        region.after_write(version)  # after the commit, never before
        return {"currency": currency, "rate": rate, "version": version}

    @app.cli.command("reconcile-prices")
    def reconcile_prices():
        """Compare the cache with the database once and repair it (what the thread does)."""
        print(region.reconcile_once().outcome)

    return app
