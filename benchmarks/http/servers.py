"""The processes under load: redis-server, and one gunicorn master per contender.

Every contender is served as production serves the app: ``gunicorn`` with the
repository's gunicorn.conf.py (gevent workers), through the same
``devtools.stampede.Stage`` the stampede scenarios use, so each gets a fresh
SQLite file and, for DynamoDB, a fresh table.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.http.contenders import Contender
from benchmarks.http.wrk import run_wrk
from devtools.ports import free_port, wait_for_port
from devtools.processes import background_process
from devtools.stampede import HTTP_TIMEOUT_SECONDS, Stage, wait_for_cache_status

CATEGORIES_PATH = "/categories"
#: redis-server listens within milliseconds; this only bounds a broken install.
REDIS_START_TIMEOUT_SECONDS = 10.0
#: The app's cache reads by result (hit, miss, stale, error), summed over workers.
CACHE_REQUESTS_METRIC = "ecommerce_cache_requests_total"
#: After the warm-up the expected X-Cache comes at once; retries only absorb a slow
#: DynamoDB read or a load still in flight.
CHECK_DEADLINE_SECONDS = 10.0


def find_redis_server() -> str | None:
    return shutil.which("redis-server")


@contextmanager
def redis_server(redis_binary: str, workdir: Path) -> Iterator[str]:
    """redis-server on a free loopback port, in memory only; yields its ``redis://`` URL."""
    port = free_port()
    command = [
        redis_binary,
        *("--port", str(port)),
        *("--bind", "127.0.0.1"),
        # No snapshots, no append-only file: nothing written to disk, as a cache needs.
        *("--save", ""),
        *("--appendonly", "no"),
    ]
    with background_process(command, workdir / "redis-server.log") as process:
        wait_for_port(port, REDIS_START_TIMEOUT_SECONDS, process, server_name="redis-server")
        yield f"redis://127.0.0.1:{port}/0"


@dataclass(frozen=True)
class Served:
    """A running contender, where to load it, and the files its master writes."""

    contender: Contender
    url: str
    #: gunicorn's log: its "Booting worker" lines count the workers started.
    log_path: Path
    #: The master's PROMETHEUS_MULTIPROC_DIR.
    metrics_directory: Path

    @property
    def target(self) -> str:
        return self.url + CATEGORIES_PATH


def contender_settings(stage: Stage, contender: Contender, redis_url: str | None) -> dict[str, Any]:
    """The stage's settings (fresh database, a fresh table for DynamoDB) plus the contender's."""
    backend = "dynamodb" if contender.uses_dynamodb else contender.name
    settings = stage.settings(backend, **contender.settings)
    if contender.uses_redis:
        settings["CACHE_REDIS_URL"] = redis_url
    return settings


@contextmanager
def serving(
    stage: Stage,
    contenders: Sequence[Contender],
    workers: int,
    redis_url: str | None,
    prepare_database: Callable[[Mapping[str, Any]], None] | None = None,
) -> Iterator[list[Served]]:
    """Every contender up and healthy at once, so rounds can interleave them.

    ``prepare_database(settings)`` runs before each contender's init-db and start: the
    scale benchmark puts a catalogue of thousands of categories in its database file
    there (init-db then finds its seed categories present and adds nothing).
    """
    with ExitStack() as stack:
        served = []
        for contender in contenders:
            settings = contender_settings(stage, contender, redis_url)
            if prepare_database is not None:
                prepare_database(settings)
            url = stack.enter_context(stage.serving(settings, workers, wsgi_app=contender.wsgi_app))
            served.append(Served(contender, url, *_instance_files(stage)))
        yield served


def _instance_files(stage: Stage) -> tuple[Path, Path]:
    """The log and Prometheus directory of the instance ``stage.serving`` just started.

    Stage names its instances ``run-<n>`` and devtools.fleet.gunicorn_instance puts
    ``<name>.log`` and ``<name>-metrics`` in the stage's folder; checked, so a change
    there fails here rather than reporting zero boots and files.
    """
    name = f"run-{stage.runs}"
    log_path = stage.workdir / f"{name}.log"
    metrics_directory = stage.workdir / f"{name}-metrics"
    if not (log_path.is_file() and metrics_directory.is_dir()):
        raise RuntimeError(f"no {log_path} or {metrics_directory}: has devtools' naming changed?")
    return log_path, metrics_directory


def warm_up(served: Sequence[Served], wrk: str, seconds: int, connections: int) -> None:
    """An unmeasured wrk run per contender, then a check of what it answers.

    The run fills every worker's caches and connection pools. The check wants a
    200 with the contender's X-Cache (a HIT for a cache) and the same body from
    every contender: a miss or a different answer would make the numbers lie. It
    may retry for a moment: a request just after the run can still join a load
    the run started, and a no-cache worker then answers HIT.
    """
    reference: Any = None
    for item in served:
        run_wrk(wrk, item.target, seconds, connections)
        expected = item.contender.expected_cache_status
        answer, _ = wait_for_cache_status(item.url, expected, CHECK_DEADLINE_SECONDS)
        reference = answer.body if reference is None else reference
        if answer.status != 200 or answer.body != reference:
            raise RuntimeError(
                f"{item.contender.name} answered {answer.status} {answer.body!r}; "
                f"expected 200 {reference!r}"
            )


def cache_results(url: str) -> Counter[str]:
    """The app's cache reads so far by result (hit, miss, ...), over all its workers."""
    text = requests.get(f"{url}/metrics", timeout=HTTP_TIMEOUT_SECONDS).text
    results: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == CACHE_REQUESTS_METRIC:
                results[sample.labels["result"]] += int(sample.value)
    return results
