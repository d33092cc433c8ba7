"""Every setting the app reads: its default and the check it must pass.

Settings arrive in three layers, later ones winning: ``DEFAULTS`` below, then
``FLASK_*`` environment variables (``app.config.from_prefixed_env()``, which
parses values as JSON: ``FLASK_CATEGORIES_CACHE_TTL=4`` is the int 4), then the
mapping given to ``create_app`` (tests). ``validate_config`` then checks the
result, so a typo stops start-up with the setting's name instead of surfacing
as a strange 500 under load.

The ``CACHE_DYNAMODB_*`` keys belong to ``cache_backends.dynamodb``, whose
factory reads them; here they are only type-checked when present.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from werkzeug.utils import ImportStringError, import_string


class CacheStrategy(StrEnum):
    """What a category write (POST, PATCH, DELETE) does to the cached list after the commit."""

    #: Leave a versioned tombstone: the next GET anywhere is a miss that reloads from the DB.
    INVALIDATE = "invalidate"
    #: Put the fresh list: the next GET anywhere is already a hit; the write pays the reload.
    WRITE_THROUGH = "write-through"
    #: Mark the list stale and reload it in the background: the write does not wait, and
    #: GETs meanwhile answer at once with the previous list as STALE.
    REFRESH_ASYNC = "refresh-async"


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
    "CATEGORIES_CACHE_TTL": 300,
    "CATEGORIES_CACHE_STRATEGY": CacheStrategy.INVALIDATE.value,
    # Seconds past the TTL during which GETs answer at once with the previous list
    # (X-Cache: STALE) while one background refresh reloads it. 0: off, the article's
    # story (after the TTL the next GET is a slow MISS).
    "CATEGORIES_CACHE_STALE_WHILE_REVALIDATE": 0,
    # Seconds the right to reload the list lasts (fleet-wide), and so the longest any
    # request waits for another's load before loading itself. Longer than a load takes.
    "CATEGORIES_CACHE_LEASE_SECONDS": 5,
    "DB_LATENCY_MS": 0,
    # Flask-SQLAlchemy resolves a relative SQLite path inside the instance
    # folder and creates that folder, so a fresh clone needs no set-up.
    "SQLALCHEMY_DATABASE_URI": "sqlite:///ecommerce.sqlite",
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


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but FLASK_X=true meaning 1 would be a surprise.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def _non_negative_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "must be an integer >= 0"


def _positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value > 0 else "must be an integer > 0"


def _non_negative_number(value: Any) -> str | None:
    return None if _is_number(value) and value >= 0 else "must be a number >= 0"


def _string(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if _is_number(value):
        # from_prefixed_env parses FLASK_X=12345 as JSON, giving the int 12345.
        return "must be a string (in the environment, quote digits as JSON: '\"12345\"')"
    return "must be a string"


def _non_empty_string(value: Any) -> str | None:
    return _string(value) or (None if value.strip() else "must not be empty")


def _optional_string(value: Any) -> str | None:
    return None if value is None else _non_empty_string(value)


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


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
        if value and all(_non_empty_string(token) is None for token in value):
            return None
        return "must be a non-empty JSON list of non-empty strings"
    return _non_empty_string(value)


def _database_uri(value: Any) -> str | None:
    problem = _non_empty_string(value)
    if problem:
        return problem
    try:
        make_url(value)
    except ArgumentError:
        return "is not a database URL (e.g. sqlite:///ecommerce.sqlite)"
    return None


def _cache_type(value: Any) -> str | None:
    """Resolve the backend the way Flask-Caching will, but fail with the setting's name."""
    problem = _non_empty_string(value)
    if problem:
        return problem
    import_path = value if "." in value else f"{FLASK_CACHING_BACKENDS_MODULE}.{value}"
    try:
        import_string(import_path)
    except ImportStringError as error:
        return f"names no importable cache backend ({error.exception})"
    return None


#: Checked always: DEFAULTS guarantees a value.
REQUIRED_SETTINGS: dict[str, Callable[[Any], str | None]] = {
    "CACHE_TYPE": _cache_type,
    "CACHE_DEFAULT_TIMEOUT": _non_negative_int,
    "CACHE_KEY_PREFIX": _string,
    "CACHE_NEAR_TTL": _non_negative_number,
    "CATEGORIES_CACHE_TTL": _non_negative_int,
    "CATEGORIES_CACHE_STRATEGY": _one_of(*(strategy.value for strategy in CacheStrategy)),
    "CATEGORIES_CACHE_STALE_WHILE_REVALIDATE": _non_negative_int,
    "CATEGORIES_CACHE_LEASE_SECONDS": _positive_int,
    "DB_LATENCY_MS": _non_negative_number,
    "SQLALCHEMY_DATABASE_URI": _database_uri,
    "MAX_CONTENT_LENGTH": _positive_int,
    # Unset: writes are refused (403). An empty token is refused here rather than
    # accepted as "no auth".
    "ADMIN_TOKEN": _admin_tokens,
    "PROXY_FIX_X_FOR": _non_negative_int,
    "PROXY_FIX_X_PROTO": _non_negative_int,
    "PROXY_FIX_X_HOST": _non_negative_int,
    "LOG_LEVEL": _one_of(*LOG_LEVELS),
    "LOG_FORMAT": _one_of(*LOG_FORMATS),
}

#: Checked only when set: the DynamoDB backend's factory owns their defaults.
OPTIONAL_SETTINGS: dict[str, Callable[[Any], str | None]] = {
    "CACHE_DYNAMODB_TABLE": _non_empty_string,
    "CACHE_DYNAMODB_ENDPOINT_URL": _optional_string,
    "CACHE_DYNAMODB_REGION": _optional_string,
    "CACHE_DYNAMODB_CREATE_TABLE": _boolean,
    "CACHE_DYNAMODB_SIGNING_KEY": _optional_string,
}


#: Never echoed in an error message: start-up errors end up in shared logs.
SECRET_SETTINGS = frozenset({"ADMIN_TOKEN", "CACHE_DYNAMODB_SIGNING_KEY"})


def _shown(name: str, value: Any) -> str:
    return f"<{type(value).__name__} hidden>" if name in SECRET_SETTINGS else repr(value)


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` listing every bad setting at once, each by name."""
    checks = {**REQUIRED_SETTINGS, **{k: v for k, v in OPTIONAL_SETTINGS.items() if k in config}}
    problems = [
        f"{name}={_shown(name, config.get(name))} {problem}"
        for name, check in checks.items()
        if (problem := check(config.get(name)))
    ]
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
