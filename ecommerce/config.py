"""Every setting the app reads: its default and the check it must pass.

Settings arrive in three layers, later ones winning: ``DEFAULTS`` below, then
``FLASK_*`` environment variables (``app.config.from_prefixed_env()``, which
parses values as JSON: ``FLASK_CATEGORIES_CACHE_TTL=4`` is the int 4), then the
mapping given to ``create_app`` (tests). ``validate_config`` then checks the
result, so a typo stops start-up with the setting's name instead of surfacing
as a strange 500 under load: one line and exit status 4, under ``flask`` (wsgi.py)
and gunicorn alike (whose master checks the environment before it forks). A
``FLASK_*`` name that is not a setting but close to one (a misspelling) is refused
the same way, with the setting it resembles; a setting written without its
``FLASK_`` prefix is ignored by Flask, and :func:`unprefixed_settings` names it so
that ``create_app`` can say so.

The ``CACHE_DYNAMODB_*`` keys belong to ``cache_backends.dynamodb``: its
``settings`` module lists them once, with their defaults and checks, and its
factory reads them. Here they are checked through that list (when present; the
signing key must be set when that backend is used), so that gunicorn's check
catches them with the others.

Importing this module loads Flask's ``Config`` and nothing of the cache: no
Flask-Caching, PynamoDB, botocore or blueprint (``create_app`` imports those),
so gunicorn's master can validate the environment in-process before it forks.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import Config, Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from werkzeug.utils import ImportStringError, import_string

from cache_backends.dynamodb import settings as dynamodb_settings
from cache_backends.region import Strategy

#: What a category write does to the cached list after the commit (the library's strategies).
CacheStrategy = Strategy


#: Small enough to refuse junk early: a category body is a few dozen bytes.
MAX_REQUEST_BODY_BYTES = 16 * 1024

DEFAULTS: dict[str, Any] = {
    "CACHE_TYPE": "SimpleCache",
    "CACHE_DEFAULT_TIMEOUT": 300,
    "CACHE_KEY_PREFIX": "ecommerce:",
    # Seconds each process may answer from its own memory what it last read from (or
    # wrote to) the shared cache: the bound on how late other instances see a write.
    # 0: off, every read asks the shared cache.
    "CACHE_NEAR_TTL": 0,
    # Seconds a near copy of the category list may live instead, while the instance's
    # PostgreSQL change listener is connected: every committed change then ends it at
    # once, so this only bounds what reaches the cache without one (a stale mark, a
    # repair), and DynamoDB sees the list's pointer read this much less often. Below
    # CACHE_NEAR_TTL (or on SQLite, or with the listener down): CACHE_NEAR_TTL.
    "CACHE_NEAR_TTL_WHILE_LISTENING": 5,
    "CATEGORIES_CACHE_TTL": 300,
    "CATEGORIES_CACHE_STRATEGY": CacheStrategy.INVALIDATE.value,
    # Seconds past the TTL during which GETs answer at once with the previous list
    # (X-Cache: STALE) while one background refresh reloads it. 0: off, the article's
    # story (after the TTL the next GET is a slow MISS).
    "CATEGORIES_CACHE_STALE_WHILE_REVALIDATE": 0,
    # Seconds each process keeps serving the list it holds (X-Cache: STALE) while the
    # cache fails, as long as the database's version (checked every reconcile interval)
    # has not moved past it: an outage or a throttled table costs the database one load
    # per change per process, not one per request. 0: every such read loads.
    "CATEGORIES_CACHE_STALE_IF_ERROR": 300,
    # Seconds the right to reload the list lasts (fleet-wide), and so the longest any
    # request waits for another's load before loading itself. Longer than a load takes.
    "CATEGORIES_CACHE_LEASE_SECONDS": 5,
    # Seconds between reconciles: one process of each instance compares the database's
    # catalogue version with the cache's and repairs (under a lease through the cache) a
    # cache left behind (a lost update, a change made with plain SQL) or ahead (a
    # restored database). The bound on how long any failure can leave an older list
    # served. 0: off.
    "CATEGORIES_CACHE_RECONCILE_SECONDS": 2,
    # The folder an instance's workers share to elect the one that runs the reconciler's
    # rounds and, on PostgreSQL, the one that listens for the catalogue trigger's
    # notifications (lock files), and to pass on what it hears (a mapped file). Empty:
    # the app's instance folder.
    "CATALOGUE_EVENTS_DIR": "",
    "DB_LATENCY_MS": 0,
    # Flask-SQLAlchemy resolves a relative SQLite path inside the instance
    # folder and creates that folder, so a fresh clone needs no set-up.
    "SQLALCHEMY_DATABASE_URI": "sqlite:///ecommerce.sqlite",
    # Each worker process's connection pool (not for SQLite, whose pools SQLAlchemy
    # picks): at most POOL_SIZE + MAX_OVERFLOW connections per worker; a request that
    # finds none free waits POOL_TIMEOUT seconds, then fails. docs/deploy.md sizes them
    # against the database's max_connections.
    "DATABASE_POOL_SIZE": 5,
    "DATABASE_MAX_OVERFLOW": 5,
    "DATABASE_POOL_TIMEOUT": 10,
    # PostgreSQL ends any statement that runs longer (0: no limit), so a stuck query
    # holds a connection for seconds, not forever. init-db's migrations are exempt.
    "DATABASE_STATEMENT_TIMEOUT_MS": 5000,
    "MAX_CONTENT_LENGTH": MAX_REQUEST_BODY_BYTES,
    "ADMIN_TOKEN": None,
    # Trusted proxy hops per X-Forwarded-* header (Werkzeug's ProxyFix). 0 ignores the
    # header: without a proxy in front, any client could claim any address. The deploy
    # sets 1 (the ALB, or nginx on a single host).
    "PROXY_FIX_X_FOR": 0,
    "PROXY_FIX_X_PROTO": 0,
    "PROXY_FIX_X_HOST": 0,
    # Applies to the app's own loggers (ecommerce.*, cache_backends.*); libraries log
    # warnings and above only. "json": one object per line for CloudWatch and friends;
    # "text": for a person reading a terminal.
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
}

#: Where Flask-Caching looks for a CACHE_TYPE without a dot ("SimpleCache").
FLASK_CACHING_BACKENDS_MODULE = "flask_caching.backends"


class ConfigError(ValueError):
    """A setting has a value the app cannot run with; the message names it."""


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {list(allowed)}"

    return check


#: Exact names: logging.setLevel("info") would raise, so lower case is refused here.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")


def _admin_tokens(value: Any) -> str | None:
    """One token, or a list of them while rotating; None (unset) disables writes."""
    if value is None:
        return None
    if isinstance(value, list):
        if value and all(dynamodb_settings.non_empty_string(token) is None for token in value):
            return None
        return "must be a non-empty JSON list of non-empty strings"
    return dynamodb_settings.non_empty_string(value)


def _database_uri(value: Any) -> str | None:
    problem = dynamodb_settings.non_empty_string(value)
    if problem:
        return problem
    try:
        make_url(value)
    except ArgumentError:
        return "is not a database URL (e.g. sqlite:///ecommerce.sqlite)"
    return None


#: CACHE_TYPE values that select the DynamoDB backend. Recognized by name, never
#: imported here: importing it loads botocore, which gunicorn's master must not do
#: before its gevent workers monkey-patch (its factory checks its settings again).
DYNAMODB_CACHE_TYPES = frozenset(
    {dynamodb_settings.CACHE_TYPE, "cache_backends.dynamodb.backend.DynamoDBCache"}
)


def _cache_type(value: Any) -> str | None:
    """Resolve the backend the way Flask-Caching will, but fail with the setting's name."""
    problem = dynamodb_settings.non_empty_string(value)
    if problem or value in DYNAMODB_CACHE_TYPES:
        return problem
    try:
        import_string(value if "." in value else f"{FLASK_CACHING_BACKENDS_MODULE}.{value}")
    except ImportStringError as error:
        return f"names no importable cache backend ({error.exception})"
    return None


#: Checked always: DEFAULTS guarantees a value.
REQUIRED_SETTINGS: dict[str, Callable[[Any], str | None]] = {
    "CACHE_TYPE": _cache_type,
    "CACHE_DEFAULT_TIMEOUT": dynamodb_settings.non_negative_int,
    "CACHE_KEY_PREFIX": dynamodb_settings.string,
    "CACHE_NEAR_TTL": dynamodb_settings.non_negative_number,
    "CACHE_NEAR_TTL_WHILE_LISTENING": dynamodb_settings.non_negative_number,
    "CATEGORIES_CACHE_TTL": dynamodb_settings.non_negative_int,
    "CATEGORIES_CACHE_STRATEGY": _one_of(*(strategy.value for strategy in CacheStrategy)),
    "CATEGORIES_CACHE_STALE_WHILE_REVALIDATE": dynamodb_settings.non_negative_int,
    "CATEGORIES_CACHE_STALE_IF_ERROR": dynamodb_settings.non_negative_number,
    "CATEGORIES_CACHE_LEASE_SECONDS": dynamodb_settings.positive_int,
    "CATEGORIES_CACHE_RECONCILE_SECONDS": dynamodb_settings.non_negative_number,
    "CATALOGUE_EVENTS_DIR": dynamodb_settings.string,
    "DB_LATENCY_MS": dynamodb_settings.non_negative_number,
    "SQLALCHEMY_DATABASE_URI": _database_uri,
    "DATABASE_POOL_SIZE": dynamodb_settings.positive_int,
    "DATABASE_MAX_OVERFLOW": dynamodb_settings.non_negative_int,
    "DATABASE_POOL_TIMEOUT": dynamodb_settings.non_negative_number,
    "DATABASE_STATEMENT_TIMEOUT_MS": dynamodb_settings.non_negative_int,
    "MAX_CONTENT_LENGTH": dynamodb_settings.positive_int,
    # Unset: writes are refused (403). An empty token is refused here rather than
    # accepted as "no auth".
    "ADMIN_TOKEN": _admin_tokens,
    "PROXY_FIX_X_FOR": dynamodb_settings.non_negative_int,
    "PROXY_FIX_X_PROTO": dynamodb_settings.non_negative_int,
    "PROXY_FIX_X_HOST": dynamodb_settings.non_negative_int,
    "LOG_LEVEL": _one_of(*LOG_LEVELS),
    "LOG_FORMAT": _one_of(*LOG_FORMATS),
}

#: Never echoed in an error message: start-up errors end up in shared logs. (The
#: DynamoDB backend's secrets are hidden by its own settings list.)
SECRET_SETTINGS = frozenset({"ADMIN_TOKEN"})


def _shown(name: str, value: Any) -> str:
    return f"<{type(value).__name__} hidden>" if name in SECRET_SETTINGS else repr(value)


#: Variables Flask's own CLI reads (``FLASK_APP``, ``FLASK_RUN_PORT``...): not settings.
FLASK_CLI_VARIABLES = ("APP", "DEBUG", "ENV", "RUN_", "SKIP_DOTENV")
#: How alike a ``FLASK_*`` name and a setting must be for the name to be a misspelling
#: (difflib's ratio: STRATAGY for STRATEGY is 0.96; names of other extensions stay far).
MISSPELLING_SIMILARITY = 0.85


def app_settings() -> frozenset[str]:
    """Every setting this app reads (its own and the DynamoDB backend's)."""
    return frozenset(DEFAULTS) | frozenset(REQUIRED_SETTINGS) | dynamodb_settings.NAMES


def misspelled_settings(environ: Mapping[str, str]) -> list[str]:
    """Each ``FLASK_*`` variable that names no setting but nearly names one, as a problem.

    A name far from every setting passes: it may be another extension's. Nested names
    (``FLASK_A__B``, which Flask makes a dict entry) are left alone.
    """
    known = app_settings() | frozenset(Flask.default_config)
    problems = []
    for variable in sorted(environ):
        name = variable.removeprefix("FLASK_")
        if name == variable or name in known or "__" in name:
            continue
        if name.startswith(FLASK_CLI_VARIABLES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=MISSPELLING_SIMILARITY)
        if close:
            problems.append(f"{variable} is not a setting (did you mean FLASK_{close[0]}?)")
    return problems


def unprefixed_settings(environ: Mapping[str, str]) -> list[str]:
    """The settings set in ``environ`` without their ``FLASK_`` prefix (Flask ignores
    them), when the prefixed variable is not set too."""
    return sorted(
        name for name in app_settings() if name in environ and f"FLASK_{name}" not in environ
    )


def validate_config(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """Raise ``ConfigError`` listing every bad setting at once, each by name, on one line;
    with ``environ``, its misspelled ``FLASK_*`` names too."""
    problems = [
        f"{name}={_shown(name, config.get(name))} {problem}"
        for name, check in REQUIRED_SETTINGS.items()
        if (problem := check(config.get(name)))
    ]
    problems += misspelled_settings(environ or {})
    problems += dynamodb_settings.config_problems(
        config, backend_selected=config.get("CACHE_TYPE") in DYNAMODB_CACHE_TYPES
    )
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def load_config(config: Config, overrides: Mapping[str, Any] | None = None) -> None:
    """Fill ``config`` layer by layer (see the module docstring), then validate it.

    The DATABASE_* settings become SQLALCHEMY_ENGINE_OPTIONS (Flask-SQLAlchemy's),
    under any options given there directly.
    """
    config.from_mapping(DEFAULTS)
    config.from_prefixed_env()
    if overrides is not None:
        config.update(overrides)
    validate_config(config, os.environ)
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **_engine_options(config),
        **config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }


def _engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """SQLAlchemy's create_engine options for the DATABASE_* settings."""
    # A pooled connection the database closed meanwhile (a restart, an RDS failover) is
    # replaced before use, not handed to a request that would fail on it.
    options: dict[str, Any] = {"pool_pre_ping": True}
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        return options
    options |= {
        "pool_size": config["DATABASE_POOL_SIZE"],
        "max_overflow": config["DATABASE_MAX_OVERFLOW"],
        "pool_timeout": config["DATABASE_POOL_TIMEOUT"],
    }
    if url.get_backend_name() == "postgresql" and config["DATABASE_STATEMENT_TIMEOUT_MS"]:
        timeout = config["DATABASE_STATEMENT_TIMEOUT_MS"]
        options["connect_args"] = {"options": f"-c statement_timeout={timeout}"}
    return options


#: The exit status of a process stopped by a bad setting. 4 is gunicorn's "App failed
#: to load": a worker exiting with it stops the master, which would otherwise fork
#: replacements that fail the same way, forever. Any non-zero status suits the flask CLI.
BAD_SETTING_EXIT_STATUS = 4


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """End the process on a ``ConfigError`` with its one-line message on stderr.

    No traceback: thirty lines of import machinery would bury the one that says
    which setting is wrong and why.
    """
    try:
        yield
    except ConfigError as error:
        print(error, file=sys.stderr, flush=True)
        raise SystemExit(BAD_SETTING_EXIT_STATUS) from None


def check_environment() -> None:
    """Validate the settings the FLASK_* environment gives, without building the app.

    For a process that must refuse to start before it builds anything: gunicorn's
    master runs this (gunicorn.conf.py), so a bad setting stops start-up once, not
    once in every worker it forks.
    """
    with exit_on_config_error():
        load_config(Config(os.getcwd(), Flask.default_config))
