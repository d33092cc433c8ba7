"""Gunicorn settings, read by plain ``gunicorn wsgi:app`` from the repository root.

Every value that differs between a laptop and production comes from an environment
variable, so the same file serves ``make run`` and the EC2 fleet behind the ALB
(deploy/cloudformation.yaml writes those variables to /etc/ecommerce/ecommerce.env).

    GUNICORN_BIND             127.0.0.1:8000   the deploy sets 0.0.0.0:8000
    GUNICORN_WORKERS          1 with SimpleCache (or FLASK_CACHE_TYPE unset),
                              otherwise CPUs + 1, at most 8
    GUNICORN_WORKER_CONNECTIONS  1000 (gevent workers: concurrent connections each)
    GUNICORN_MAX_WORKER_MEMORY_MB  1024: a worker above this resident size is recycled
    GUNICORN_MAX_WORKER_AGE_SECONDS  0 (off): a worker older than this is recycled
    FORWARDED_ALLOW_IPS       127.0.0.1,::1    the deploy sets the VPC CIDR
    PROMETHEUS_MULTIPROC_DIR  a fresh temporary directory created here

Anything else can still be overridden per run with gunicorn's own GUNICORN_CMD_ARGS,
which takes precedence over this file.

A bad FLASK_* setting stops the master before it forks a worker, with one line that
names it (on_starting below); so does a GUNICORN_BIND address another process listens on
(unless gunicorn itself set GUNICORN_FD: a new master inheriting the old one's sockets).
"""

from __future__ import annotations

import atexit
import datetime
import gc
import json
import os
import random
import resource
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger
from gunicorn.util import parse_address

from ecommerce.config import BAD_SETTING_EXIT_STATUS, DEFAULTS, check_environment

# --- Prometheus multiprocess directory -------------------------------------------------
# This block must run before anything imports prometheus_client: the library picks its
# value class (in-memory or mmap files) once, at import time, from PROMETHEUS_MULTIPROC_DIR.
# If the variable appeared later, each worker would count into its own memory and
# /metrics would show whichever worker happened to answer the scrape. That is also why
# prometheus_client is imported only inside the hooks below, never at the top of this file.
_PROMETHEUS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _remove_directory_we_created(path: str, creator_pid: int) -> None:
    # Workers are forked from the master and inherit this atexit handler; only the
    # process that created the directory may delete it, or the first worker to exit
    # would pull the metric files from under its siblings.
    if os.getpid() == creator_pid:
        shutil.rmtree(path, ignore_errors=True)


if not os.environ.get(_PROMETHEUS_DIR_VARIABLE):
    # A fresh directory per master: files from an earlier run would add old counts to
    # the new run's totals. Set in os.environ so the workers, forked later, inherit it.
    # On a HUP reload this file runs again, finds the variable set and keeps the
    # directory, so the running workers' counts survive the reload.
    _created_directory = tempfile.mkdtemp(prefix="ecommerce-prometheus-")
    os.environ[_PROMETHEUS_DIR_VARIABLE] = _created_directory
    atexit.register(_remove_directory_we_created, _created_directory, os.getpid())


# --- Environment helpers --------------------------------------------------------------
def _int_from_env(name: str, default: int, minimum: int = 1) -> int:
    raw_value = os.environ.get(name, "").strip()
    if not raw_value:
        return default
    try:
        value = int(raw_value)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        # Stop start-up with the variable's name: a typo silently falling back to the
        # default would leave a fleet running with a worker count nobody chose.
        raise SystemExit(f"{name} must be an integer >= {minimum}, got {raw_value!r}")
    return value


def _available_cpus() -> int:
    # sched_getaffinity honours CPU pinning (containers, taskset); cpu_count does not.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS
        return os.cpu_count() or 1


# Flask-Caching accepts the short name, its legacy alias and the full import paths.
_IN_PROCESS_CACHE_NAMES = {"simplecache", "simple"}


def _cache_lives_in_one_process() -> bool:
    # FLASK_CACHE_TYPE unset: the app's default (SimpleCache, as in `make run`).
    cache_type = os.environ.get("FLASK_CACHE_TYPE", "").strip() or DEFAULTS["CACHE_TYPE"]
    return cache_type.rsplit(".", 1)[-1].lower() in _IN_PROCESS_CACHE_NAMES


# Workers give CPU parallelism (one GIL each); greenlets give I/O concurrency. The work
# is I/O-bound (a DynamoDB round trip, a small SQL query), so CPUs + 1 workers keep
# every core busy, the +1 covering a worker that is restarting (a recycle, below) or
# importing the app. The sync-worker rule 2 * CPUs + 1 would only add processes whose
# greenlets already cover the waiting. The cap of 8 bounds database connections: every
# worker has its own SQLAlchemy pool, and instances x workers x pool must stay below
# the RDS instance's max_connections.
MAX_COMPUTED_WORKERS = 8

# SimpleCache is a dict inside one worker process. With several workers a POST handled
# by one worker would leave the others serving their own stale copy until the TTL, so
# an in-process cache gets exactly one worker (and greenlets for concurrency). Several
# workers or instances need the shared DynamoDB backend.
if _cache_lives_in_one_process():
    _default_workers = 1
else:
    _default_workers = min(_available_cpus() + 1, MAX_COMPUTED_WORKERS)

# --- Server socket ----------------------------------------------------------------------
# Loopback by default so a developer's `make run` is not reachable from the network; the
# EC2 deploy binds 0.0.0.0:8000 and the security group admits only the ALB.
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]

# --- Workers ----------------------------------------------------------------------------
# gevent, not gthread: a gthread worker reads each request's body in one of its few
# threads, so 20 clients that send headers and then trickle a body (a laptop on the
# internet can) hold every thread and the instance stops answering, health checks
# included, and the ALB in front does not buffer bodies. A gevent worker gives each
# connection a greenlet: a slow client costs a few KB, not a thread. The app mostly
# waits (DynamoDB, the database), which is what greenlets are for; gevent patches
# sockets, time.sleep and threading in the worker before the app is imported
# (preload_app stays off), so botocore, the SQLAlchemy pool, the cache lease's waits
# and the background refresh pool all cooperate.
worker_class = "gevent"
workers = _int_from_env("GUNICORN_WORKERS", _default_workers)
# Concurrent connections per worker, slow ones included. Requests beyond the database
# pool (5 + 5 overflow by default: FLASK_DATABASE_POOL_SIZE, FLASK_DATABASE_MAX_OVERFLOW)
# wait for a connection there, not in a thread.
worker_connections = _int_from_env("GUNICORN_WORKER_CONNECTIONS", 1000)

# Not preloaded: botocore clients (under PynamoDB) and SQLAlchemy pools do not survive
# fork; sockets opened in the master would be shared by every worker. Loading the app in
# each worker creates them after the fork. The cost is a slower start, paid once.
preload_app = False

# No recycling by request count. At ~2,000 req/s a worker reached max_requests = 10,000
# every ~5 s; a recycled worker stops accepting but lingers until its kept-alive
# connections close (up to graceful_timeout), the master forks its replacement only once
# it has exited, and each recycle left its Prometheus files behind and started a cold
# near-cache: p99 went from 12 ms to ~1 s from the second wrk wave on, and once both
# workers recycled in the same second and the instance served nothing for 19 s. A worker
# is recycled for what calls for it instead (post_request below): resident memory above
# GUNICORN_MAX_WORKER_MEMORY_MB, or, if set, an age above GUNICORN_MAX_WORKER_AGE_SECONDS.
# Each worker's limits get up to 10 % of jitter, so workers forked together do not hit
# them in the same second.
max_requests = 0
MAX_WORKER_MEMORY_MB = _int_from_env("GUNICORN_MAX_WORKER_MEMORY_MB", 1024)
MAX_WORKER_AGE_SECONDS = _int_from_env("GUNICORN_MAX_WORKER_AGE_SECONDS", 0, minimum=0)
RECYCLE_JITTER_FRACTION = 0.1

# --- Timeouts ---------------------------------------------------------------------------
# The ALB keeps idle connections to targets for 60 s (its idle timeout). If gunicorn
# closed an idle connection first, the ALB could send a request down a socket being
# closed and answer the client 502. Keep-alive must therefore outlast the ALB's 60 s.
keepalive = 75
# A worker silent this long is killed and replaced. A gevent worker's heartbeat runs in
# its own greenlet, so it stops only when something holds the event loop without
# yielding (a blocking call gevent cannot patch, a CPU-bound loop): a wedged process,
# not one slow request, which waits cooperatively. Requests here take milliseconds.
timeout = 30
# On SIGTERM (systemd stop, instance refresh) in-flight requests get this long to finish.
# The ALB has already stopped routing to the instance (deregistration delay), so 30 s is
# ample; systemd's TimeoutStopSec in deploy/ecommerce.service is longer so it never
# SIGKILLs a shutdown that is still within this window.
graceful_timeout = 30

# --- Proxies ----------------------------------------------------------------------------
# Addresses allowed to set X-Forwarded-Proto (the request scheme). Gunicorn itself reads
# the same variable; it is repeated here so the default is visible. Locally only nginx on
# loopback is trusted; the deploy sets the VPC CIDR because ALB nodes take addresses
# from the VPC's subnets. Client addresses (X-Forwarded-For) are handled by Werkzeug's
# ProxyFix in the app (FLASK_PROXY_FIX_X_FOR), not here.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# --- Control socket ---------------------------------------------------------------------
# Gunicorn >= 25 opens a control socket for `gunicornc` in $XDG_RUNTIME_DIR or
# ~/.gunicorn by default. Nothing here uses it (systemd manages the process), the home
# directory is read-only under the systemd unit's hardening, and two instances on one
# host (the load-balancer test, `make cluster`) would replace each other's socket.
control_socket_disable = True

# --- Logging ----------------------------------------------------------------------------
# Containers, systemd and CloudWatch all collect stdout/stderr; files would need rotation.
# No access log by default: the app writes one JSON line per request itself
# (ecommerce/observability.py, logger "ecommerce.access") with the same fields plus what
# only the app knows (the cache result even when DynamoDB failed, the request id it
# generated), so this one would double the log volume (and the CloudWatch bill) for no
# new information. What only gunicorn sees is a request it refused before the app ran
# (e.g. a malformed request line): those appear in the error log. To get this line too:
# GUNICORN_CMD_ARGS="--access-logfile -", which uses the JSON format below.
accesslog = None
errorlog = "-"  # "-" is stderr for the error log
loglevel = "info"
proc_name = "ecommerce"

# When the access log is switched on: one JSON object per line. Strings are quoted
# here and escaped by JsonAccessLogger below; status, duration_ms and bytes are bare JSON
# numbers (bytes may be null). The query string and Referer are left out on purpose:
# they can carry tokens, and tokens must never reach the logs. request_id and cache come
# from the app's response headers, as does trace_id (the ALB's X-Amzn-Trace-Id once the
# app has validated it; "-" without one); remote_addr is the client's address once the app's
# ProxyFix has rewritten the environ.
access_log_format = (
    '{"time": "%(t)s", "level": "INFO", "logger": "gunicorn.access", '
    '"request_id": "%({x-request-id}o)s", "method": "%(m)s", "path": "%(U)s", '
    '"trace_id": "%({x-amzn-trace-id}o)s", '
    '"status": %(s)s, "duration_ms": %(M)s, "bytes": %(B)s, "cache": "%({x-cache}o)s", '
    '"remote_addr": "%(h)s", "forwarded_for": "%({x-forwarded-for}i)s", '
    '"user_agent": "%(a)s"}'
)


def _json_fragment(value: Any) -> str:
    """Render one log atom so that it is valid JSON inside the template above."""
    if value is None:
        return "null"  # only a bare field (bytes) can be None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # json.dumps escapes quotes, backslashes and control characters; the template
    # supplies the surrounding quotes, so strip the ones json.dumps adds.
    return json.dumps(str(value))[1:-1]


class JsonEscapedAtoms(dict):
    """Gunicorn's SafeAtoms escapes only double quotes: a backslash or a tab in a path
    or User-Agent would break the JSON line. This escapes every atom for JSON and keeps
    SafeAtoms' lookup rules (header atoms case-insensitive, missing atoms as "-")."""

    def __init__(self, atoms: dict[str, Any]) -> None:
        super().__init__((key, _json_fragment(value)) for key, value in atoms.items())

    def __getitem__(self, key: str) -> str:
        if key.startswith("{"):
            key = key.lower()
        return super().get(key, "-")


class JsonAccessLogger(Logger):
    atoms_wrapper_class = JsonEscapedAtoms

    def now(self) -> str:
        # ISO 8601 in UTC, as log pipelines parse it, instead of Apache's [26/Nov/...].
        now_utc = datetime.datetime.now(datetime.UTC)
        return now_utc.isoformat(timespec="milliseconds")


logger_class = JsonAccessLogger


# --- Hooks ------------------------------------------------------------------------------
def on_starting(server: Any) -> None:
    # Runs once in the master before the first worker is forked (not on HUP reloads).
    # Left to the workers, a bad setting would be reported once per worker, amid
    # gunicorn's lines about workers exiting. Checked here, in the master: the config
    # module loads Flask's Config and SQLAlchemy's URL parser, never the cache backend
    # (botocore and urllib3 must not be imported before the gevent workers patch).
    check_environment()
    _check_the_address_is_free(bind[0])
    # A directory given by the operator may hold files from a previous run, whose
    # counters would be added to this run's: prometheus_client requires an empty
    # directory at start. Only *.db metric files are removed, never anything else.
    metrics_directory = Path(os.environ[_PROMETHEUS_DIR_VARIABLE])
    metrics_directory.mkdir(parents=True, exist_ok=True)
    for stale_file in metrics_directory.glob("*.db"):
        stale_file.unlink(missing_ok=True)
    server.log.info("Prometheus multiprocess directory: %s", metrics_directory)

    if server.cfg.workers > 1 and _cache_lives_in_one_process():
        server.log.warning(
            "%d workers with an in-process cache (SimpleCache): each worker keeps its own "
            "copy, so a write through one worker leaves the others stale until the TTL. "
            "Use GUNICORN_WORKERS=1 or the DynamoDB cache backend.",
            server.cfg.workers,
        )


def _check_the_address_is_free(address: str) -> None:
    """One line naming GUNICORN_BIND when another process listens there, and exit status 4.

    gunicorn would retry five times, a second apart, then exit with "Can't connect",
    which names neither the setting nor a way out. Not when gunicorn inherits its
    sockets (a USR2 upgrade, systemd): the old master holds the address on purpose.
    """
    if "GUNICORN_FD" in os.environ or "LISTEN_FDS" in os.environ:
        return
    parsed = parse_address(address)
    if not isinstance(parsed, tuple):
        return  # a Unix socket or a file descriptor: gunicorn says what is wrong with it
    host, port = parsed
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            print(
                f"GUNICORN_BIND={address}: {error.strerror} (another server there?): "
                f"set GUNICORN_BIND to a free address, e.g. GUNICORN_BIND={host}:{port + 1}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(BAD_SETTING_EXIT_STATUS) from None


def post_fork(server: Any, worker: Any) -> None:
    # Runs in the new worker before it installs its signal handlers. Ctrl-C (SIGINT to
    # the whole foreground group, then SIGQUIT from the master) makes a gevent worker
    # quit in a greenlet that calls sys.exit after a 0.1 s sleep; when the worker has
    # left its loop by then, gevent prints that SystemExit as a traceback (gunicorn
    # issue #3239). SIGTERM's handler only ends the loop: the worker finishes its
    # requests (graceful_timeout, which the master waits on a quick stop too before
    # SIGKILL) and exits once, quietly.
    worker.handle_quit = worker.handle_exit


def post_request(worker: Any, req: Any, environ: dict[str, Any], resp: Any) -> None:
    # gevent switches greenlets only where one waits. A kept-alive client that sends its
    # next request as soon as it has the answer finds it already buffered, so a hit
    # served from memory (SimpleCache, the near-cache) never waits, and that one
    # connection can be served hundreds of times while the worker's other connections
    # queue: p99 of a memory hit was ~1 s under wrk -c16. Yielding once per request
    # gives each ready connection its turn (p99 in the tens of ms; docs/bench-http.md).
    if worker.cfg.worker_class_str == "gevent":
        import gevent

        gevent.sleep(0)
    _freeze_what_the_worker_built(worker)
    reason = _recycle_reason(worker)
    if reason is not None and worker.alive:
        worker.log.info("worker %s: %s; restarting after its current requests", worker.pid, reason)
        worker.alive = False  # what gunicorn's own max_requests does: finish, then exit


#: Requests after which a worker moves every object it holds out of the cyclic garbage
#: collector's reach (gc.freeze). A worker holds ~220,000 tracked objects once it has
#: served (Flask, SQLAlchemy, botocore's service model, built on first use), and a full
#: collection walks them all: 130-150 ms measured here, during which a gevent worker
#: serves no connection (two per worker in a 40 s load run: p99 spikes of waves).
#: Frozen, they are never walked again; garbage made later is collected as before. The
#: first request builds what its path needs; by the thousandth (seconds under load, a
#: few hours of health checks when idle) the clients, pools and near-cache exist too.
GC_FREEZE_AFTER_REQUESTS = frozenset({1, 1_000})


def _freeze_what_the_worker_built(worker: Any) -> None:
    handled = getattr(worker, "requests_served", 0) + 1
    worker.requests_served = handled
    if handled in GC_FREEZE_AFTER_REQUESTS:
        gc.freeze()


#: Seconds between two looks at a worker's limits (its first request always looks).
#: getrusage is a syscall, and per request it was ~4 % of a worker's CPU under load
#: (py-spy); a limit is now noticed within this long of being crossed instead.
RECYCLE_CHECK_INTERVAL_SECONDS = 1.0


def _recycle_reason(worker: Any) -> str | None:
    """Why ``worker`` should be replaced now, or None; looked at once a second at most."""
    now = time.monotonic()
    limits = getattr(worker, "recycle_limits", None)
    if limits is None:  # this worker's own jittered limits, drawn once
        spread = 1 - random.uniform(0, RECYCLE_JITTER_FRACTION)
        limits = worker.recycle_limits = (
            MAX_WORKER_MEMORY_MB * spread,
            MAX_WORKER_AGE_SECONDS * spread,
            now,
        )
    elif now - worker.recycle_checked_at < RECYCLE_CHECK_INTERVAL_SECONDS:
        return None
    worker.recycle_checked_at = now
    memory_limit_mb, age_limit_seconds, started = limits
    # ru_maxrss: the peak resident size, in KiB on Linux. Peak, not current: memory a
    # worker grew into is rarely given back to the system anyway.
    resident_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if resident_mb > memory_limit_mb:
        return f"resident memory {resident_mb:.0f} MB above {memory_limit_mb:.0f} MB"
    age = now - started
    if age_limit_seconds and age > age_limit_seconds:
        return f"age {age:.0f} s above {age_limit_seconds:.0f} s"
    return None


def child_exit(server: Any, worker: Any) -> None:
    # Runs in the master after a worker exits (recycled, crashed or stopped), before its
    # replacement is forked. Left alone, every dead worker's files would stay in the
    # Prometheus directory for good: after days of recycling, thousands of files that
    # every scrape reads. Its counters and histograms are added into one archive set and
    # its files deleted (live gauges are dropped, as prometheus_client's
    # mark_process_dead does), under a lock that scrapes respect, so totals stay exact.
    from ecommerce.metrics_archive import archive_dead_worker

    if not archive_dead_worker(os.environ[_PROMETHEUS_DIR_VARIABLE], worker.pid):
        server.log.warning("worker %s: Prometheus files not archived yet", worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    # Runs in the worker after its last request, on a graceful stop or a recycle: the
    # background refreshes it queued (refresh-async, stale-while-revalidate) finish first,
    # so none is lost. One that is lost anyway (SIGKILL, a crash) is not a stale cache
    # for long: the next reader finds the list marked stale and takes over the refresh.
    from ecommerce.categories.cache_policy import stop_categories_cache

    app = getattr(worker, "wsgi", None)  # None: the worker failed before loading the app
    if app is not None and not stop_categories_cache(app):
        server.log.warning("worker %s: cache refreshes still running at exit", worker.pid)
    # Hand what post_request froze back to the collector: left frozen, those objects would
    # outlive module teardown at exit, and their weakref callbacks (logging's handler
    # references) would run against torn-down modules and print "Exception ignored" tracebacks.
    gc.unfreeze()
    gc.collect()
