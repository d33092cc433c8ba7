"""Many requests at the moment the cached list is missing, expired or being refreshed.

Each scenario starts ``gunicorn wsgi:app`` (the repository's gunicorn.conf.py) on a
fresh SQLite file and a fresh table in DynamoDB Local, fires concurrent requests
released together by a barrier, and reads the database loads from the app's own
``ecommerce_db_loads_total`` (summed over the workers by ``/metrics``)::

    cold         N concurrent GETs on an empty cache
    expiry       N concurrent GETs just after the TTL ran out
    simplecache  16 concurrent GETs, SimpleCache in one worker (16 threads)
    stale        16 concurrent GETs just past the TTL with a 30 s stale window
    writes       POST latency, write-through vs refresh-async, and what GETs see after

``make stampede`` (scripts/stampede.py) prints them; tests/blackbox/test_stampede.py runs
the same functions and asserts the counts; the HTTP benchmark serves its
contenders through the same ``Stage``.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

from devtools import REPOSITORY_ROOT
from devtools.credentials import DEV_ADMIN_AUTHORIZATION, use_local_aws_credentials
from devtools.dynamodb_local import DynamoDBLocal
from devtools.fleet import (
    WSGI_APP,
    dynamodb_settings,
    gunicorn_instance,
    prepare,
    wait_until_healthy,
)

HTTP_TIMEOUT_SECONDS = 30.0
DB_LOADS_METRIC = "ecommerce_db_loads_total"
#: Under 10 s, so the TTL's 10 % jitter (whole seconds) is zero and expiry is exact.
SHORT_TTL_SECONDS = 3
STALE_WINDOW_SECONDS = 30
#: Past the TTL by this much before the burst: DynamoDB's expiry is in milliseconds.
EXPIRY_MARGIN_SECONDS = 0.3
POLL_INTERVAL_SECONDS = 0.05
SCENARIOS = ("cold", "expiry", "simplecache", "stale", "writes")


@dataclass(frozen=True)
class Answer:
    status: int
    cache: str
    seconds: float
    body: Any


@dataclass(frozen=True)
class Burst:
    """What N concurrent requests got, and the database loads they caused."""

    answers: list[Answer]
    db_loads: float

    @property
    def cache_results(self) -> dict[str, int]:
        return dict(Counter(answer.cache for answer in self.answers))

    def summary(self) -> str:
        seconds = sorted(answer.seconds for answer in self.answers)
        return (
            f"{len(self.answers)} requests -> {self.db_loads:g} database load(s); "
            f"X-Cache {self.cache_results}; latency p50 {statistics.median(seconds) * 1000:.0f} ms,"
            f" max {seconds[-1] * 1000:.0f} ms"
        )


@dataclass
class Stage:
    """A DynamoDB (Local) endpoint and a working folder shared by the scenarios of one run."""

    dynamodb_endpoint_url: str
    workdir: Path
    app_root: Path = REPOSITORY_ROOT
    #: Settings every run gets (tests relax the read budget for a busy machine).
    common_settings: Mapping[str, Any] = field(default_factory=dict)
    runs: int = 0

    def settings(self, backend: str, **overrides: Any) -> dict[str, Any]:
        """A fresh database file and, for DynamoDB, a fresh table, plus ``overrides``."""
        self.runs += 1
        settings: dict[str, Any] = {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{self.workdir / f'run-{self.runs}.sqlite'}",
            "LOG_LEVEL": "WARNING",
        }
        if backend == "dynamodb":
            table_name = f"stampede-{uuid.uuid4().hex[:12]}"
            settings |= dynamodb_settings(self.dynamodb_endpoint_url, table_name)
        return settings | dict(self.common_settings) | overrides

    @contextmanager
    def serving(
        self,
        settings: Mapping[str, Any],
        workers: int,
        threads: int | None = None,
        *,
        wsgi_app: str = WSGI_APP,
        gunicorn_arguments: Sequence[str] = (),
    ) -> Iterator[str]:
        """``gunicorn wsgi:app`` (or ``wsgi_app``) on ``settings``, seeded; yields its URL.

        The cache starts cold: init-db's write leaves a tombstone (or nothing).
        """
        prepare(settings, self.app_root, quiet=True)
        name = f"run-{self.runs}"
        with gunicorn_instance(
            name,
            settings,
            self.workdir,
            workers,
            threads=threads,
            app_root=self.app_root,
            wsgi_app=wsgi_app,
            gunicorn_arguments=gunicorn_arguments,
        ) as instance:
            wait_until_healthy(instance.url, instance.process, instance.log_path)
            yield instance.url


def db_loads(url: str) -> float:
    """``ecommerce_db_loads_total`` as /metrics reports it (all workers)."""
    text = requests.get(f"{url}/metrics", timeout=HTTP_TIMEOUT_SECONDS).text
    for line in text.splitlines():
        if line.startswith(DB_LOADS_METRIC + " "):
            return float(line.split()[1])
    return 0.0


def timed(call: Callable[[], requests.Response]) -> Answer:
    started = time.perf_counter()
    response = call()
    seconds = time.perf_counter() - started
    body = response.json() if response.content else None
    return Answer(response.status_code, response.headers.get("X-Cache", "-"), seconds, body)


def get_list(url: str) -> Answer:
    return timed(lambda: requests.get(f"{url}/categories", timeout=HTTP_TIMEOUT_SECONDS))


def post(url: str, name: str) -> Answer:
    return timed(
        lambda: requests.post(
            f"{url}/categories",
            json={"name": name},
            headers=DEV_ADMIN_AUTHORIZATION,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
    )


def burst(url: str, count: int) -> Burst:
    """``count`` GETs released at the same moment; the database loads they caused."""
    loads_before = db_loads(url)
    barrier = threading.Barrier(count)
    answers: list[Answer | None] = [None] * count

    def one(index: int) -> None:
        barrier.wait()
        answers[index] = get_list(url)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [answer for answer in answers if answer is not None]
    return Burst(done, db_loads(url) - loads_before)


def wait_until_stale(started: float, ttl: float) -> None:
    """Sleep until ``ttl`` seconds (and a margin) after ``started`` (time.monotonic())."""
    time.sleep(max(0.0, started + ttl + EXPIRY_MARGIN_SECONDS - time.monotonic()))


def wait_for_cache_status(url: str, status: str, deadline_seconds: float) -> tuple[Answer, float]:
    """GET until X-Cache is ``status``; that answer and the seconds it took to come."""
    started = time.monotonic()
    while (answer := get_list(url)).cache != status:
        if time.monotonic() - started > deadline_seconds:
            raise RuntimeError(f"no {status} within {deadline_seconds} s; last answer {answer}")
        time.sleep(POLL_INTERVAL_SECONDS)
    return answer, time.monotonic() - started


def wait_for_hit(url: str, deadline_seconds: float) -> tuple[Answer, float]:
    """GET until a HIT; the HIT and the seconds it took to come."""
    return wait_for_cache_status(url, "HIT", deadline_seconds)


# --- scenarios -------------------------------------------------------------------------


def cold(stage: Stage, requests_count: int, workers: int, threads: int, latency_ms: int) -> Burst:
    settings = stage.settings("dynamodb", DB_LATENCY_MS=latency_ms)
    with stage.serving(settings, workers, threads) as url:
        return burst(url, requests_count)


def expiry(stage: Stage, requests_count: int, workers: int, threads: int, latency_ms: int) -> Burst:
    settings = stage.settings(
        "dynamodb", DB_LATENCY_MS=latency_ms, CATEGORIES_CACHE_TTL=SHORT_TTL_SECONDS
    )
    with stage.serving(settings, workers, threads) as url:
        get_list(url)  # the cold load
        stored = time.monotonic()
        wait_until_stale(stored, SHORT_TTL_SECONDS)
        return burst(url, requests_count)


def simplecache(stage: Stage, requests_count: int, latency_ms: int) -> Burst:
    settings = stage.settings("simple", DB_LATENCY_MS=latency_ms)
    with stage.serving(settings, workers=1, threads=requests_count) as url:
        return burst(url, requests_count)


@dataclass(frozen=True)
class StaleResult:
    burst: Burst
    next_answer: Answer
    seconds_to_hit: float


def stale(
    stage: Stage, requests_count: int, workers: int, threads: int, latency_ms: int
) -> StaleResult:
    settings = stage.settings(
        "dynamodb",
        DB_LATENCY_MS=latency_ms,
        CATEGORIES_CACHE_TTL=SHORT_TTL_SECONDS,
        CATEGORIES_CACHE_STALE_WHILE_REVALIDATE=STALE_WINDOW_SECONDS,
    )
    with stage.serving(settings, workers, threads) as url:
        get_list(url)
        wait_until_stale(time.monotonic(), SHORT_TTL_SECONDS)
        loads_before = db_loads(url)
        stale_burst = burst(url, requests_count)
        hit, seconds = wait_for_hit(url, deadline_seconds=10 * latency_ms / 1000 + 5)
        # The burst answered before its refresh ran (that is the point): count the
        # refresh's load once the HIT shows it landed, not when the burst returned.
        stale_burst = replace(stale_burst, db_loads=db_loads(url) - loads_before)
        return StaleResult(stale_burst, hit, seconds)


@dataclass(frozen=True)
class WriteResult:
    strategy: str
    post: Answer
    get_after: Answer
    hit: Answer
    seconds_to_hit: float
    db_loads: float


def writes(stage: Stage, strategy: str, workers: int, threads: int, latency_ms: int) -> WriteResult:
    """A warm cache, one POST, then GETs until a HIT: what the write and the readers paid."""
    settings = stage.settings(
        "dynamodb", DB_LATENCY_MS=latency_ms, CATEGORIES_CACHE_STRATEGY=strategy
    )
    with stage.serving(settings, workers, threads) as url:
        wait_for_hit(url, deadline_seconds=10 * latency_ms / 1000 + 5)  # warm
        loads_before = db_loads(url)
        created = post(url, "Toys")
        after = get_list(url)
        hit, seconds = wait_for_hit(url, deadline_seconds=10 * latency_ms / 1000 + 5)
        return WriteResult(strategy, created, after, hit, seconds, db_loads(url) - loads_before)


@contextmanager
def stage(app_root: Path = REPOSITORY_ROOT) -> Iterator[Stage]:
    """A DynamoDB Local and a temporary folder for one run of scenarios."""
    use_local_aws_credentials()
    with (
        tempfile.TemporaryDirectory(prefix="ecommerce-stampede-") as directory,
        DynamoDBLocal() as dynamodb,
    ):
        yield Stage(dynamodb.endpoint_url, Path(directory), app_root)
