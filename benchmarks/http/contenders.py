"""The contenders: where each answers ``GET /categories`` from, and the settings that say so.

All but the bare app are the real app (``wsgi:app``), differing only in ``FLASK_*``
settings, so any gap between them is the cache backend's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cache_backends.loader import CacheStatus
from devtools.fleet import WSGI_APP

SIMPLECACHE = "simplecache"
REDIS = "redis"
DYNAMODB = "dynamodb"
DYNAMODB_NEAR = "dynamodb-near"
NO_CACHE = "no-cache"
BARE_FLASK = "bare-flask"

#: ``devtools.stampede.Answer.cache`` of a response without an X-Cache header.
NO_CACHE_HEADER = "-"
#: The no-cache contender's database: slow enough that its cost is plain beside a hit.
NO_CACHE_DB_LATENCY_MS = 50
#: The near-cache's freshness bound: another process's write is seen within this.
NEAR_CACHE_TTL_SECONDS = 1


@dataclass(frozen=True)
class Contender:
    """One gunicorn master serving ``/categories`` a particular way."""

    name: str
    #: One line for the report.
    label: str
    #: ``FLASK_*`` settings on top of the stage's (database file, log level).
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: Gets a fresh table in DynamoDB Local (``devtools.stampede.Stage.settings``).
    uses_dynamodb: bool = False
    #: Gets ``CACHE_REDIS_URL`` of the redis-server the benchmark starts.
    uses_redis: bool = False
    wsgi_app: str = WSGI_APP
    #: The X-Cache every measured request must carry once the cache is warm.
    expected_cache_status: str = CacheStatus.HIT

    @property
    def is_app(self) -> bool:
        """The real app, with its /metrics; the bare app has neither."""
        return self.wsgi_app == WSGI_APP


CONTENDERS: tuple[Contender, ...] = (
    Contender(
        SIMPLECACHE,
        "Flask-Caching SimpleCache (a dict in each worker)",
        {"CACHE_TYPE": "SimpleCache"},
    ),
    Contender(
        REDIS,
        "Flask-Caching RedisCache on a local redis-server",
        {"CACHE_TYPE": "RedisCache"},
        uses_redis=True,
    ),
    Contender(
        DYNAMODB,
        "our DynamoDBCache on DynamoDB Local, no near-cache",
        {"CACHE_NEAR_TTL": 0},
        uses_dynamodb=True,
    ),
    Contender(
        DYNAMODB_NEAR,
        f"our DynamoDBCache with a {NEAR_CACHE_TTL_SECONDS} s in-process near-cache",
        {"CACHE_NEAR_TTL": NEAR_CACHE_TTL_SECONDS},
        uses_dynamodb=True,
    ),
    Contender(
        NO_CACHE,
        f"NullCache: nothing is kept, every request waits for a {NO_CACHE_DB_LATENCY_MS} ms "
        "database load (concurrent ones in a worker share one, and count as hits)",
        {"CACHE_TYPE": "NullCache", "DB_LATENCY_MS": NO_CACHE_DB_LATENCY_MS},
        expected_cache_status=CacheStatus.MISS,
    ),
    Contender(
        BARE_FLASK,
        "a bare Flask app returning the same list (the floor)",
        wsgi_app="benchmarks.http.bare_app:app",
        expected_cache_status=NO_CACHE_HEADER,
    ),
)
CONTENDER_NAMES = tuple(contender.name for contender in CONTENDERS)


def select_contenders(names: Sequence[str]) -> list[Contender]:
    """The named contenders in the canonical order; ValueError names any unknown one."""
    unknown = sorted(set(names) - set(CONTENDER_NAMES))
    if unknown:
        raise ValueError(f"unknown contenders {unknown}; choose from {list(CONTENDER_NAMES)}")
    return [contender for contender in CONTENDERS if contender.name in names]
