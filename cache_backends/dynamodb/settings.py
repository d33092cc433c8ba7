"""The DynamoDB backend's Flask settings, listed once: name, default, check, meaning.

:data:`SETTINGS` is the one list. :meth:`DynamoDBSettings.from_config` builds
the backend from it (Flask-Caching's ``factory``), :func:`config_problems`
reports every bad value at once for the app's start-up check
(``ecommerce/config.py``), and the settings table of ``DynamoDBCache``'s
docstring is tested against it.

Standard library only: the app validates its configuration, and gunicorn's
master checks the environment, without loading pynamodb, botocore, Flask or
Flask-Caching.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: What ``CACHE_TYPE`` names to select this backend (Flask-Caching imports it).
CACHE_TYPE = "cache_backends.dynamodb.DynamoDBCache"

DEFAULT_TABLE_NAME = "ecommerce-cache"
#: Flask-Caching's own default for CACHE_DEFAULT_TIMEOUT, and cachelib's.
DEFAULT_TIMEOUT = 300
#: PynamoDB's own defaults (15 s connect, 30 s read, 3 retries, a pool of 10) are
#: wrong for a cache whose fallback is the database: short timeouts, one retry,
#: a pool at least as large as a worker's thread count.
DEFAULT_CONNECT_TIMEOUT = 1.0
DEFAULT_READ_TIMEOUT = 1.0
DEFAULT_MAX_RETRIES = 1
DEFAULT_MAX_POOL_CONNECTIONS = 32
#: Seconds a get/get_many/has may take, connect and read together, with no retry.
#: DynamoDB answers a GetItem in single-digit milliseconds in a region.
DEFAULT_GET_TIMEOUT = 0.1
#: Seconds a write's cache update may take on the request path, connect and read
#: together, with no retry: a PutItem takes milliseconds, so this only bounds what a
#: partition adds to a POST. What does not land is owed and retried in the background.
DEFAULT_WRITE_TIMEOUT = 0.3
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_COOLDOWN = 10.0
#: The largest value stored, after compression: 8 MiB is ~22 parts of 392 KB
#: (parts.py), read with one BatchGetItem (100 keys, 16 MB per answer) for
#: ~2,100 read units strongly consistent. Above one item, every read costs
#: about one read unit per 4 KB of it.
DEFAULT_MAX_VALUE_BYTES = 8 * 1024 * 1024
#: Copies of each value written once (a region's list body), read one at random: when
#: every instance reads a new body within the same second, each copy's item takes an
#: eighth of the burst. At 1,000 instances and a 100 KB body (12.5 read units
#: eventually consistent) that is ~1,560 read units a second per item, about half of
#: what one partition serves; one copy would pass it four times over.
DEFAULT_BODY_COPIES = 8

#: A check answers None for a good value, else what is wrong ("must be ...").
Check = Callable[[Any], str | None]


# -- checks: the same words ecommerce/config.py uses for its own settings -------


def is_int(value: Any) -> bool:
    """An int, but not a bool: FLASK_X=true meaning 1 would be a surprise."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return is_int(value) or isinstance(value, float)


def non_negative_int(value: Any) -> str | None:
    return None if is_int(value) and value >= 0 else "must be an integer >= 0"


def positive_int(value: Any) -> str | None:
    return None if is_int(value) and value > 0 else "must be an integer > 0"


def non_negative_number(value: Any) -> str | None:
    return None if is_number(value) and value >= 0 else "must be a number >= 0"


def string(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if is_number(value):
        # from_prefixed_env parses FLASK_X=12345 as JSON, giving the int 12345.
        return "must be a string (in the environment, quote digits as JSON: '\"12345\"')"
    return "must be a string"


def non_empty_string(value: Any) -> str | None:
    return string(value) or (None if value.strip() else "must not be empty")


def optional_string(value: Any) -> str | None:
    """None (unset), or a string with something in it."""
    return None if value is None else non_empty_string(value)


def boolean(value: Any) -> str | None:
    """A real bool: "False" from the environment (not JSON) would otherwise be truthy."""
    return None if isinstance(value, bool) else "must be true or false"


def _string_or_none(value: Any) -> str | None:
    return None if value is None else string(value)


def _old_signing_keys(value: Any) -> str | None:
    """None, one key, or a list of keys (``[]``: none)."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, list | tuple) and all(non_empty_string(key) is None for key in value):
        return None
    return "must be a key or a JSON list of non-empty keys"


def _as_float(value: Any) -> float:
    return float(value)


def _as_key_tuple(value: Any) -> tuple[str, ...]:
    """One key alone is a tuple of one: a bare string must not be iterated, or each of
    its characters would become a one-character key anyone could sign entries with."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _unchanged(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Setting:
    """One Flask setting of the backend: the field it fills and what it must be."""

    #: The Flask config key (``FLASK_<name>`` in the environment).
    name: str
    #: The DynamoDBSettings field, which is also DynamoDBCache's keyword argument.
    field: str
    check: Check
    #: Used when the key is absent from the config.
    default: Any
    #: Never echoed in an error message: start-up errors end up in shared logs.
    secret: bool = False
    #: The description in DynamoDBCache's settings table.
    doc: str = ""
    #: Turns a checked value into the field's (an int timeout into a float...).
    parse: Callable[[Any], Any] = _unchanged
    #: Flask-Caching's own setting, shared by every backend: the app checks it
    #: whatever CACHE_TYPE says, so :func:`config_problems` leaves it alone.
    shared: bool = False

    def shown(self, value: Any) -> str:
        """``value`` as an error message may show it."""
        return f"<{type(value).__name__} hidden>" if self.secret else repr(value)


SIGNING_KEY_SETTING = "CACHE_DYNAMODB_SIGNING_KEY"
REGION_SETTING = "CACHE_DYNAMODB_REGION"
#: The signing key's fallback, Flask's own secret.
FALLBACK_SIGNING_KEY_SETTING = "SECRET_KEY"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "CACHE_DYNAMODB_TABLE",
        "table_name",
        non_empty_string,
        DEFAULT_TABLE_NAME,
        doc=f"table name (``{DEFAULT_TABLE_NAME}``)",
    ),
    Setting(
        REGION_SETTING,
        "region_name",
        optional_string,
        None,
        doc="region; default: the AWS chain",
    ),
    Setting(
        "CACHE_DYNAMODB_ENDPOINT_URL",
        "endpoint_url",
        optional_string,
        None,
        doc="e.g. DynamoDB Local's URL; default: AWS",
    ),
    Setting(
        "CACHE_DYNAMODB_CREATE_TABLE",
        "create_table",
        boolean,
        False,
        doc="create the table at start-up (local runs)",
    ),
    Setting(
        SIGNING_KEY_SETTING,
        "signing_key",
        optional_string,
        None,
        secret=True,
        doc=f"HMAC key; falls back to ``{FALLBACK_SIGNING_KEY_SETTING}``",
    ),
    Setting(
        "CACHE_DYNAMODB_OLD_SIGNING_KEYS",
        "old_signing_keys",
        _old_signing_keys,
        (),
        secret=True,
        parse=_as_key_tuple,
        doc="list of keys still accepted on reads",
    ),
    Setting(
        "CACHE_DYNAMODB_CONSISTENT_READ",
        "consistent_read",
        boolean,
        True,
        doc="strongly consistent reads (``True``)",
    ),
    Setting(
        "CACHE_DYNAMODB_MAX_VALUE_BYTES",
        "max_value_bytes",
        positive_int,
        DEFAULT_MAX_VALUE_BYTES,
        doc=f"largest value after compression (``{DEFAULT_MAX_VALUE_BYTES}``)",
    ),
    Setting(
        "CACHE_DYNAMODB_BODY_COPIES",
        "body_copies",
        positive_int,
        DEFAULT_BODY_COPIES,
        doc=f"copies of each list body (``{DEFAULT_BODY_COPIES}``)",
    ),
    Setting(
        "CACHE_DYNAMODB_CONNECT_TIMEOUT",
        "connect_timeout",
        non_negative_number,
        DEFAULT_CONNECT_TIMEOUT,
        parse=_as_float,
        doc=f"seconds (``{DEFAULT_CONNECT_TIMEOUT}``)",
    ),
    Setting(
        "CACHE_DYNAMODB_READ_TIMEOUT",
        "read_timeout",
        non_negative_number,
        DEFAULT_READ_TIMEOUT,
        parse=_as_float,
        doc=f"seconds (``{DEFAULT_READ_TIMEOUT}``)",
    ),
    Setting(
        "CACHE_DYNAMODB_GET_TIMEOUT",
        "get_timeout",
        non_negative_number,
        DEFAULT_GET_TIMEOUT,
        parse=_as_float,
        doc=f"seconds for get and has (``{DEFAULT_GET_TIMEOUT}``)",
    ),
    Setting(
        "CACHE_DYNAMODB_WRITE_TIMEOUT",
        "write_timeout",
        non_negative_number,
        DEFAULT_WRITE_TIMEOUT,
        parse=_as_float,
        doc=f"seconds for request-path writes (``{DEFAULT_WRITE_TIMEOUT}``)",
    ),
    Setting(
        "CACHE_DYNAMODB_MAX_RETRIES",
        "max_retries",
        non_negative_int,
        DEFAULT_MAX_RETRIES,
        doc=f"botocore retries per call (``{DEFAULT_MAX_RETRIES}``)",
    ),
    Setting(
        "CACHE_DYNAMODB_MAX_POOL",
        "max_pool_connections",
        positive_int,
        DEFAULT_MAX_POOL_CONNECTIONS,
        doc=f"HTTP connections per process (``{DEFAULT_MAX_POOL_CONNECTIONS}``)",
    ),
    Setting(
        "CACHE_DYNAMODB_BREAKER_FAILURES",
        "breaker_failures",
        non_negative_int,  # 0 disables the breaker
        DEFAULT_BREAKER_FAILURES,
        doc=f"failures that open the circuit (``{DEFAULT_BREAKER_FAILURES}``)",
    ),
    Setting(
        "CACHE_DYNAMODB_BREAKER_COOLDOWN",
        "breaker_cooldown",
        non_negative_number,
        DEFAULT_BREAKER_COOLDOWN,
        parse=_as_float,
        doc=f"seconds the circuit stays open (``{DEFAULT_BREAKER_COOLDOWN}``)",
    ),
    Setting(
        "CACHE_DEFAULT_TIMEOUT",
        "default_timeout",
        non_negative_int,
        DEFAULT_TIMEOUT,
        shared=True,
        doc=f"default TTL in seconds (``{DEFAULT_TIMEOUT}``)",
    ),
    Setting(
        "CACHE_KEY_PREFIX",
        "key_prefix",
        _string_or_none,
        None,
        shared=True,
        doc="prefix of every key",
    ),
)

#: Every setting's Flask config key.
NAMES = frozenset(setting.name for setting in SETTINGS)


@dataclass(frozen=True, slots=True)
class DynamoDBSettings:
    """Everything the backend reads from Flask config, checked; field = keyword argument.

    Build it with :meth:`from_config`; ``DynamoDBCache(**settings.as_kwargs())``
    is the backend it describes.
    """

    table_name: str
    region_name: str | None
    endpoint_url: str | None
    create_table: bool
    signing_key: str | bytes
    old_signing_keys: tuple[str, ...]
    consistent_read: bool
    max_value_bytes: int
    body_copies: int
    connect_timeout: float
    read_timeout: float
    get_timeout: float
    write_timeout: float
    max_retries: int
    max_pool_connections: int
    breaker_failures: int
    breaker_cooldown: float
    default_timeout: int
    key_prefix: str | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DynamoDBSettings:
        """The settings ``config`` gives; ValueError naming every bad one, on one line.

        A missing key takes its default; the signing key falls back to
        ``SECRET_KEY`` and is required.
        """
        problems = _problems(config, SETTINGS) + _missing_signing_key(config)
        if problems:
            raise ValueError("; ".join(problems))
        values = {
            setting.field: setting.parse(config[setting.name])
            if setting.name in config
            else setting.default
            for setting in SETTINGS
        }
        values["signing_key"] = values["signing_key"] or config[FALLBACK_SIGNING_KEY_SETTING]
        return cls(**values)

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as DynamoDBCache's keyword arguments."""
        return {setting.field: getattr(self, setting.field) for setting in SETTINGS}


def config_problems(config: Mapping[str, Any], *, backend_selected: bool) -> list[str]:
    """What is wrong with the backend's settings in ``config``, one line each.

    ``NAME=<value> must be ...`` for each ``CACHE_DYNAMODB_*`` setting that is
    present and bad (absent ones take their defaults; secrets are shown as
    ``<str hidden>``). With ``backend_selected`` (CACHE_TYPE names this
    backend), also ``CACHE_DYNAMODB_SIGNING_KEY is not set ...`` when neither it
    nor ``SECRET_KEY`` is, so that the refusal comes with the other bad settings
    before gunicorn forks a worker. Flask-Caching's shared settings
    (CACHE_DEFAULT_TIMEOUT, CACHE_KEY_PREFIX) are the app's to check.
    """
    problems = _problems(config, tuple(setting for setting in SETTINGS if not setting.shared))
    return problems + (_missing_signing_key(config) if backend_selected else [])


def _problems(config: Mapping[str, Any], settings: tuple[Setting, ...]) -> list[str]:
    return [
        f"{setting.name}={setting.shown(value)} {problem}"
        for setting in settings
        if setting.name in config
        and (problem := setting.check(value := config[setting.name])) is not None
    ]


def _missing_signing_key(config: Mapping[str, Any]) -> list[str]:
    """The one setting without a usable default: every instance must sign alike.

    A key generated per process would make each instance reject the others'
    entries, a silent 0 % hit rate. A key that is set is checked with the others.
    """
    if config.get(SIGNING_KEY_SETTING) is not None or config.get(FALLBACK_SIGNING_KEY_SETTING):
        return []
    return [
        f"{SIGNING_KEY_SETTING} is not set (nor {FALLBACK_SIGNING_KEY_SETTING}): the DynamoDB "
        "cache needs the same secret on every instance, e.g. "
        f"FLASK_{SIGNING_KEY_SETTING}=<random 32+ bytes>"
    ]
