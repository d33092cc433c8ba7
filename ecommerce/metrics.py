"""Every Prometheus metric the app exports, defined once, and the ``/metrics`` rendering.

Metrics live at module level because prometheus_client registers each name once
per process: defining them inside ``create_app`` would raise "Duplicated
timeseries" the second time a test process builds an app.

Under gunicorn, ``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before
anything imports prometheus_client. The library then keeps every value in an
mmap file per worker process, and a scrape, answered by whichever worker, adds
up the files of all workers, dead ones included, so counters survive worker
recycling: gunicorn's master folds a dead worker's files into one archive set
(``ecommerce.metrics_archive``), so the directory stays small however many
workers come and go. Without the variable (tests, ``flask run``) values stay in
memory.

Label values are bounded on purpose: ``route`` is the URL rule
(``/categories/<int:category_id>``), never the raw path, and ``method`` folds
unknown verbs into ``OTHER``, so no client can create series at will.
"""

from __future__ import annotations

import functools
import os
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics import MetricWrapperBase

from ecommerce.metrics_archive import reading_directory

Metric = TypeVar("Metric", bound=MetricWrapperBase)

#: Read right after importing prometheus_client, which chose its storage (memory or
#: mmap files) from the same variable at its own import.
MULTIPROCESS_DIRECTORY = os.environ.get("PROMETHEUS_MULTIPROC_DIR")

#: The route label of a request no URL rule matched (404, and 405 for a wrong verb).
UNMATCHED_ROUTE = "unmatched"
#: Method label values; any other verb is counted as OTHER.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"

#: Requests take milliseconds (a cache hit) to a few hundred (a slow database load).
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: A DynamoDB call takes a few milliseconds inside a region; the backend's timeouts
#: (1 s connect, 1 s read, one retry) put the worst case near 2-4 s.
DYNAMODB_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HTTP_REQUESTS = Counter(
    "ecommerce_http_requests_total",
    "HTTP requests answered, by method, URL rule and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "ecommerce_http_request_duration_seconds",
    "Time from the start of the request to the response, by method and URL rule.",
    ["method", "route"],
    buckets=HTTP_DURATION_BUCKETS,
)
CACHE_REQUESTS = Counter(
    "ecommerce_cache_requests_total",
    "Cached reads by cache name and result: hit, miss, stale (the previous value, served "
    "while one caller refreshes it), or error (the backend failed; the database answered).",
    ["cache", "result"],
)
DB_LOADS = Counter(
    "ecommerce_db_loads_total",
    "Loads of the category list from the database (cache misses and write-throughs).",
)
CACHE_LOADER_EVENTS = Counter(
    "ecommerce_cache_loader_events_total",
    "What the read-through loader did, by cache name and event: lease_acquired (this "
    "process loaded), lease_waited (another caller was loading; this one waited for its "
    "result), lease_timed_out (the wait ran out; this one loaded too), store_fenced (a "
    "store refused because the cache held a newer version), refresh_dropped (the "
    "background refresh pool was full).",
    ["cache", "event"],
)
NEAR_CACHE_LOOKUPS = Counter(
    "ecommerce_cache_near_lookups_total",
    "Reads of the near-cache (CACHE_NEAR_TTL > 0), by result: hit (answered from this "
    "process's memory) or miss (the instance's shared copy or the shared cache answered: "
    "ecommerce_cache_shared_copy_lookups_total tells which).",
    ["result"],
)
SHARED_COPY_LOOKUPS = Counter(
    "ecommerce_cache_shared_copy_lookups_total",
    "Near-cache misses of the category list answered through the instance's shared copy "
    "(CATALOGUE_EVENTS_DIR), by result: taken (another worker's copy answered) or read "
    "(this worker read the shared cache, for the instance).",
    ["result"],
)
DYNAMODB_CALL_DURATION = Histogram(
    "ecommerce_dynamodb_call_duration_seconds",
    "Duration of DynamoDB calls made by the cache backend, by operation.",
    ["operation"],
    buckets=DYNAMODB_DURATION_BUCKETS,
)
DYNAMODB_CALL_ERRORS = Counter(
    "ecommerce_dynamodb_call_errors_total",
    "DynamoDB calls that failed or were skipped by the open circuit breaker, by operation.",
    ["operation"],
)

DYNAMODB_THROTTLES = Counter(
    "ecommerce_dynamodb_throttles_total",
    "DynamoDB calls refused for capacity (throttled: DynamoDB is up), by operation.",
    ["operation"],
)

CACHE_REJECTED_ENTRIES = Counter(
    "ecommerce_cache_rejected_entries_total",
    "Cache items read but not served, by reason: bad_signature (forged, changed, or signed "
    "with a key this instance does not accept), not_a_counter, unloadable (a class since "
    "renamed); for values larger than one item: missing_part (reclaimed or never written), "
    "bad_part, bad_digest, bad_manifest.",
    ["reason"],
)

# -- coherence: owed updates and the reconciler (cache_backends/owed.py, reconciler.py) --
CACHE_OWED_PENDING = Gauge(
    "ecommerce_cache_owed_updates_pending",
    "Keys whose cache update after a write has not landed yet and is being retried, by "
    "cache name; summed over the live workers (a dead worker's debts are the reconciler's).",
    ["cache"],
    multiprocess_mode="livesum",
)
CACHE_OWED_UPDATES = Counter(
    "ecommerce_cache_owed_updates_total",
    "What happened to cache updates owed after a write, by cache name and outcome: owed "
    "(it did not land), landed (a retry did), fenced (a retry found something newer), "
    "superseded (a newer update replaced it), retry_failed, abandoned (still owed at "
    "shutdown: left to the reconciler).",
    ["cache", "outcome"],
)
CACHE_RECONCILES = Counter(
    "ecommerce_cache_reconciles_total",
    "Reconciles of a cached key against the database's version, by cache name and "
    "outcome: in_sync, fenced (a tombstone or stale mark at that version), absent, behind "
    "and ahead (each repaired), lease_held (another process reconciled), failed.",
    ["cache", "outcome"],
)
CACHE_RECONCILE_REPAIRS = Counter(
    "ecommerce_cache_reconcile_repairs_total",
    "Reconciles that changed the cache, by cache name and what they found: absent "
    "(tombstoned), behind (the strategy applied), ahead (forgotten).",
    ["cache", "repair"],
)
CACHE_VERSION_LAG = Gauge(
    "ecommerce_cache_version_lag",
    "Versions the cache was behind the database at the fleet's latest reconcile, before "
    "its repair (negative: ahead; 0: coherent), by cache name.",
    ["cache"],
    multiprocess_mode="livemostrecent",
)
CACHE_COHERENT_TIMESTAMP = Gauge(
    "ecommerce_cache_coherent_timestamp_seconds",
    "Unix time of the fleet's latest reconcile that left the cache coherent with the "
    "database (in sync, fenced, or repaired), by cache name: time() minus this is how "
    "long the cache may have been behind; it grows only while reconciles fail or stop.",
    ["cache"],
    multiprocess_mode="livemostrecent",
)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


@functools.cache
def labelled(metric: Metric, *label_values: str) -> Metric:
    """``metric.labels(*label_values)``, looked up once per series and then kept.

    ``labels()`` checks and converts its arguments and takes the metric's lock on
    every call, and each request records three series. The child it returns is the
    one the metric itself keeps for those values (and, in multiprocess mode,
    reopens the right file after a fork), so keeping it changes nothing recorded.
    Label values are bounded (the module docstring), so is this cache.
    """
    return metric.labels(*label_values)


def render_latest() -> tuple[bytes, str]:
    """The exposition text and its content type, covering every worker when multiprocess.

    A fresh registry per scrape is prometheus_client's documented multiprocess
    pattern: the collector reads the directory each time. The default registry is
    not used then, because its process collectors would describe only the worker
    that happens to answer. The collector lists and reads the files while the
    master may be folding a dead worker into the archive: the shared lock makes it
    see that worker exactly once.
    """
    if MULTIPROCESS_DIRECTORY:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIRECTORY)
        with reading_directory(MULTIPROCESS_DIRECTORY):
            body = generate_latest(registry)
        return body, CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
